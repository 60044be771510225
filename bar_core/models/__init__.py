"""Model registry: `MODELS` names and `build_model(name, in_channels, num_classes)`.

Every model has a Hard Concrete gate after each BatchNorm of its prunable maps (`gated=True`, the
default); `gated=False` builds the dense twin with plain BatchNorms, same parameter names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from ..hard_concrete import BETA, GAMMA, ZETA
from .gated import GatedBatchNorm2d, attach_gate_sampler, gate_parameters, gates, set_gates_frozen, weight_parameters
from .resnet import CifarResNet, cifar_resnet, torchvision_resnet18
from .wide_resnet import WideBasic, WideResNet


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    builder: Callable[..., nn.Module]


_REGISTRY: dict[str, ModelInfo] = {}


def _register(name: str, description: str, builder: Callable[..., nn.Module]) -> None:
    _REGISTRY[name] = ModelInfo(name, description, builder)


for _depth in (8, 14, 20, 56):
    _register(f"resnet{_depth}", f"CIFAR-style ResNet-{_depth} (16/32/64 channels, {(_depth - 2) // 6} block(s) per stage)",
              partial(cifar_resnet, _depth))
for _k in (1, 2, 4, 8):
    _register(f"wrn16_{_k}", f"Wide ResNet WRN-16-{_k} (pre-activation, widths {16 * _k}/{32 * _k}/{64 * _k})",
              partial(WideResNet, 16, _k))
_register("resnet18", "torchvision resnet18 (ImageNet layout, random init) with gates after its BatchNorms",
          torchvision_resnet18)

MODELS: tuple[str, ...] = tuple(_REGISTRY)
# Small enough to prune and fine-tune on the shipped Fashion-MNIST subset in about a minute on a
# 2-core CPU, yet residual, so the default demo shows mixed connectivity.
DEFAULT_MODEL = "resnet8"


class ModelError(ValueError):
    """An unknown model name; the message lists the allowed ones."""


def describe_models() -> list[dict]:
    """Every registered model as {"name", "description"}, in registry order (`bar list-models`)."""
    return [{"name": m.name, "description": m.description} for m in _REGISTRY.values()]


def build_model(name: str, in_channels: int = 1, num_classes: int = 10, *, gated: bool = True,
                gate_init: float = 3.0, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> nn.Module:
    """Build `name` for `in_channels`-channel inputs (28×28 and up) and `num_classes` classes."""
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    if in_channels < 1 or num_classes < 2:
        raise ModelError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
    norm = (partial(GatedBatchNorm2d, gate_init=gate_init, beta=beta, gamma=gamma, zeta=zeta)
            if gated else nn.BatchNorm2d)
    model = _REGISTRY[name].builder(in_channels=in_channels, num_classes=num_classes, norm_layer=norm)
    return attach_gate_sampler(model) if gated else model


__all__ = ["MODELS", "DEFAULT_MODEL", "ModelError", "build_model", "describe_models", "GatedBatchNorm2d",
           "gates", "gate_parameters", "attach_gate_sampler", "weight_parameters", "set_gates_frozen", "CifarResNet", "WideResNet",
           "WideBasic"]
