"""Activation volume: what BAR budgets.

    V   = Σ_l A_l · #{i : ẑ_{l,i} > 0}          (hard count of surviving feature maps, no gradient)
    V0  = Σ_l A_l · C_l                          (every gate open)
    L_S = Σ_l A_l Σ_i P(z_{l,i} > 0)             (expected volume: the differentiable sparsity loss)

A_l = H_l × W_l is the spatial area of gated layer l's maps, measured by a forward pass on the
model's input shape and stored on the gate (`gate.area`), so each gate can report its own share.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .hard_concrete import HardConcreteGate
from .models.gated import gates


@dataclass(frozen=True)
class GatedLayer:
    name: str           # module name of the gate's owner (e.g. "layer1.0.bn2")
    channels: int
    area: int           # A_l = H × W of its feature maps
    height: int
    width: int


def measure_areas(model: nn.Module, sample_input: Tensor) -> list[GatedLayer]:
    """Run one eval-mode forward pass and record each gate's map size on the gate itself.

    The size is read from the output of the gate's owner (a GatedBatchNorm2d applies its gate
    without calling it) or of the gate itself when something calls it as a module."""
    seen: dict[HardConcreteGate, tuple[int, int]] = {}

    def recorder(gate: HardConcreteGate):
        return lambda mod, inp, out: seen.__setitem__(gate, tuple(out.shape[-2:]))

    hooks = []
    for name, g in gates(model):
        hooks.append(g.register_forward_hook(recorder(g)))
        owner_name = name.rpartition(".")[0]
        owner = model.get_submodule(owner_name) if owner_name else model
        if owner is not model:
            hooks.append(owner.register_forward_hook(recorder(g)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(sample_input[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    layers = []
    for name, g in gates(model):
        if g not in seen:
            raise RuntimeError(f"gate {name} was not reached by a forward pass; cannot measure its area")
        h, w = seen[g]
        g.area = h * w
        layers.append(GatedLayer(name.removesuffix(".gate"), g.num_channels, h * w, h, w))
    return layers


def _area(name: str, g: HardConcreteGate) -> int:
    area = getattr(g, "area", None)
    if area is None:
        raise RuntimeError(f"gate {name} has no measured area; call measure_areas(model, sample_input) first")
    return area


def initial_volume(model: nn.Module) -> int:
    """V0: the volume with every gate open."""
    return sum(_area(n, g) * g.num_channels for n, g in gates(model))


def volume(model: nn.Module) -> int:
    """V: area-weighted count of channels whose test gate is non-zero."""
    return sum(_area(n, g) * g.num_open() for n, g in gates(model))


def expected_volume(model: nn.Module, weighted: bool = True) -> Tensor:
    """L_S = Σ_l A_l Σ_i P(z > 0) (weighted) or Σ_l Σ_i P(z > 0) (unweighted), differentiable in log α."""
    terms = [g.prob_open().sum() * (_area(n, g) if weighted else 1) for n, g in gates(model)]
    if not terms:
        raise RuntimeError("the model has no gates")
    return torch.stack(terms).sum()
