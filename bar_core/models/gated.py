"""A BatchNorm followed by a Hard Concrete gate per channel: the unit BAR prunes.

The gate lives inside the BatchNorm module (as `bn.gate`) so that a gated network keeps the same
module tree and parameter names as its dense twin: a dense checkpoint loads into a gated model with
only the gates' log α missing, and torchvision's blocks take it as their `norm_layer`.
"""
from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn

from ..hard_concrete import BETA, GAMMA, ZETA, HardConcreteGate


class GatedBatchNorm2d(nn.BatchNorm2d):
    """y = z ⊙ BN(x): the gate comes after the normalisation, which would otherwise undo it."""

    def __init__(self, num_features: int, *, gate_init: float = 3.0, beta: float = BETA,
                 gamma: float = GAMMA, zeta: float = ZETA, **bn_kwargs):
        super().__init__(num_features, **bn_kwargs)
        self.gate = HardConcreteGate(num_features, gate_init, beta, gamma, zeta)

    def forward(self, x: Tensor) -> Tensor:
        return self.gate(super().forward(x))


def gates(model: nn.Module) -> Iterator[tuple[str, HardConcreteGate]]:
    """(name, gate) for every Hard Concrete gate of `model`, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, HardConcreteGate):
            yield name, module


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The log α of every gate: they get their own optimiser group (own lr, no weight decay)."""
    return [g.log_alpha for _, g in gates(model)]


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter except the gates'."""
    gate_ids = {id(p) for p in gate_parameters(model)}
    return [p for p in model.parameters() if id(p) not in gate_ids]


def set_gates_frozen(model: nn.Module, frozen: bool) -> None:
    """Frozen gates use their deterministic value ẑ even in training mode (fine-tune phase)."""
    for _, g in gates(model):
        g.frozen = frozen
        g.log_alpha.requires_grad_(not frozen)
