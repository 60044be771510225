"""The prune-then-fine-tune baseline: a dense network pruned once, by channel importance, to a MAC target.

This is the practice BAR is measured against (Li et al. 2017, "Pruning Filters for Efficient ConvNets";
Liu et al. 2017, "Network Slimming" for the BatchNorm-scale importance), done with Torch-Pruning
(Fang et al., CVPR 2023), the field's maintained structured-pruning library: it traces the network,
groups the channels that must go together (a residual stream and every conv that reads or writes it)
and removes whole groups. What is left is a plain, physically narrower nn.Module.

Torch-Pruning's knob is a channel ratio, not a cost, so `prune_to_macs` searches the ratio
(bisection) until the pruned network's MACs, counted by `cost.count_macs` as for a BAR network, are
within `tolerance` of the target. The classifier is never pruned (its outputs are the classes).

A `magnitude` run (the `method` setting) applies the same choice to the gated student instead of
keeping Torch-Pruning's narrower copy: `close_removed_gates` shuts, for good, the gate of every
BatchNorm channel Torch-Pruning removed. Every reader of a removed channel goes through a gated
BatchNorm, so the gated network computes what the narrower one does, and the run's views, its
connectivity and its pruned network are those of any other run.
"""
from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .cost import _shape, activation_volume, count_macs, count_params

IMPORTANCES = ("bn_scale", "l2")
MAX_LAYER_RATIO = 0.95  # no layer loses every channel: a network with an empty layer computes nothing
CLOSED_LOG_ALPHA = -10.0  # far below the closed threshold -ln 11: the test gate is exactly 0


class MagnitudePruningError(ValueError):
    """A MAC target that cannot be reached, or a bad option; the message is one line."""


@dataclass(frozen=True)
class MagnitudeReport:
    """What one-shot pruning reached, next to what was asked."""
    target_mac_ratio: float
    mac_ratio: float          # pruned MACs ÷ dense MACs
    volume_ratio: float       # pruned activation volume (Σ BN outputs) ÷ dense
    pruning_ratio: float      # Torch-Pruning's global channel ratio that reached it
    dense_macs: int
    macs: int
    dense_params: int
    params: int
    importance: str
    # BatchNorm name -> the channel indices Torch-Pruning removed from it (every pruned layer has a BN)
    removed: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def removed_channels(self) -> int:
        return sum(len(v) for v in self.removed.values())


def _importance(kind: str):
    import torch_pruning as tp

    if kind == "bn_scale":
        return _Floored(tp.importance.BNScaleImportance())  # |γ| of the BN after each conv (Network Slimming)
    if kind == "l2":
        return _Floored(tp.importance.MagnitudeImportance(p=2))  # L2 norm of each filter (Li et al.)
    raise MagnitudePruningError(f"unknown importance {kind!r}; allowed: {', '.join(IMPORTANCES)}")


def kept_at_least(channels: int) -> int:
    """The channels a layer of `channels` keeps whatever the threshold: (1 - MAX_LAYER_RATIO) of them, at least one."""
    return max(1, math.ceil(channels * (1 - MAX_LAYER_RATIO) - 1e-9))


class _Floored:
    """An importance whose `kept_at_least` most important channels of every group rank above every other
    channel of the network. Torch-Pruning's global threshold skips a group whole when it would empty a
    layer (its `max_pruning_ratio` does not bound a one-shot global step), so past some ratio the
    pruned network grows again; with the floor, raising the ratio only ever removes channels."""

    def __init__(self, base):
        self.base = base
        self.groups: dict[int, tuple[int, int]] = {}  # group -> (its channels, those the floor keeps)

    @property
    def ceiling(self) -> float:
        """The largest global ratio that removes no protected channel (known once every group was ranked)."""
        channels = sum(n for n, _ in self.groups.values())
        # half a channel inside it, so that Torch-Pruning's int() of the kept count cannot reach the floor
        return 1.0 - (sum(k for _, k in self.groups.values()) + 0.5) / channels if channels else 1.0

    def __call__(self, group, **kwargs):
        imp = self.base(group, **kwargs)
        if imp is None or imp.numel() == 0:
            return imp
        self.groups[id(group[0].dep.target.module)] = (imp.numel(), kept_at_least(imp.numel()))
        top = torch.topk(imp, kept_at_least(imp.numel())).indices
        imp = imp.clone()
        imp[top] += imp.abs().max() * 1e3 + 1.0  # above every unprotected channel of any group, order kept
        return imp


def _classifiers(model: nn.Module) -> list[nn.Module]:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1:]  # the last linear layer maps features to classes: its outputs must stay


def prune_by_ratio(model: nn.Module, input_shape: Sequence[int], ratio: float, importance: str = "bn_scale") -> nn.Module:
    """A pruned copy of `model` with the least important `ratio` of its channels removed, ranked over
    the whole network (the input is left untouched), every layer keeping `kept_at_least` of its
    channels (a larger ratio stops there). `input_shape`: (C, H, W) of one example."""
    return _prune(model, input_shape, ratio, importance)[0]


def _prune(model: nn.Module, input_shape: Sequence[int], ratio: float,
           importance: str) -> tuple[nn.Module, dict[str, tuple[int, ...]], float]:
    """prune_by_ratio, which channels of which BatchNorm (by name in `model`) it removed, and the
    largest ratio up to which the pruned network only shrinks (`_Floored.ceiling`)."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    names = {m: n for n, m in pruned.named_modules()}  # Torch-Pruning edits these modules in place
    example = torch.zeros(_shape(input_shape), device=next(pruned.parameters()).device)
    # Global ranking (Network Slimming's one threshold over every layer): one channel more or less is a
    # small MAC step, where a per-layer ratio moves in steps of a whole 1/16 of the narrowest layer.
    ranking = _importance(importance)
    pruner = tp.pruner.MetaPruner(pruned, example, importance=ranking, pruning_ratio=float(ratio),
                                  max_pruning_ratio=MAX_LAYER_RATIO, ignored_layers=_classifiers(pruned),
                                  global_pruning=True)
    removed: dict[str, set[int]] = {}
    groups = pruner.step(interactive=True)  # each group: the coupled layers and the indices they lose
    first = next(groups, None)  # by now every group is ranked, so the ceiling is known
    if first is not None and ratio > ranking.ceiling:  # past it the floor itself would go: stop at it
        return _prune(model, input_shape, ranking.ceiling, importance)
    for group in itertools.chain([first] if first is not None else [], groups):
        for dep, idxs in group:
            target = dep.target.module
            if isinstance(target, nn.BatchNorm2d):
                removed.setdefault(names[target], set()).update(int(i) for i in idxs)
        group.prune()
    return pruned, {name: tuple(sorted(idx)) for name, idx in removed.items()}, ranking.ceiling


def close_removed_gates(gated_model: nn.Module, removed: dict[str, tuple[int, ...]]) -> int:
    """Shut the gate of every channel in `removed` (BatchNorm name -> indices, as MagnitudeReport
    holds them) and open every other gate fully; returns the number of channels closed. Frozen gates
    keep these values (the fine-tune phase), so the architecture stays what Torch-Pruning chose."""
    from .models.gated import gates

    known = {name.removesuffix(".gate"): g for name, g in gates(gated_model)}
    unknown = sorted(set(removed) - set(known))
    if unknown:
        raise MagnitudePruningError(f"pruned layer(s) {', '.join(unknown)} have no gate in this network")
    closed = 0
    with torch.no_grad():
        for name, gate in known.items():
            idx = list(removed.get(name, ()))
            gate.log_alpha.clamp_(min=3.0)  # open: the test gate is exactly 1 from log α ≈ 2.4 on
            if idx:
                gate.log_alpha[idx] = CLOSED_LOG_ALPHA
                closed += len(idx)
    return closed


def prune_to_macs(model: nn.Module, input_shape: Sequence[int], mac_ratio: float, *, importance: str = "bn_scale",
                  tolerance: float = 0.05, max_iterations: int = 30,
                  closest: bool = False) -> tuple[nn.Module, MagnitudeReport]:
    """Prune a dense network once so that its MACs come as close as channels allow to `mac_ratio` × the
    dense MACs; MagnitudePruningError if the closest is further than `tolerance` (relative to the
    target). Returns the pruned copy and a report. Removing one channel of a stream that several
    convs share moves the MACs in a step (about 1 % of resnet8's MACs for a 28×28 stream channel), so
    at small ratios the closest reachable point can be a few percent off the target.

    model: a dense network (for a BAR model, `build_model(..., gated=False)` or `cost.dense_twin`).
    input_shape: (C, H, W) of one example, as the MACs are counted for it.
    importance: "bn_scale" (|γ| of BatchNorm, the default) or "l2" (filter norm).
    closest: return the closest reachable network instead of raising when none is within `tolerance`.
    """
    if not (isinstance(mac_ratio, (int, float)) and 0.0 < mac_ratio <= 1.0):
        raise MagnitudePruningError(f"mac_ratio must be in (0, 1], got {mac_ratio!r}")
    _importance(importance)  # an unknown kind fails before any work
    dense_macs = count_macs(model, input_shape)
    dense_volume = activation_volume(model, input_shape)
    dense_params = count_params(model)
    target = mac_ratio * dense_macs

    def report(net: nn.Module, ratio: float, removed: dict) -> MagnitudeReport:
        macs = count_macs(net, input_shape)
        return MagnitudeReport(mac_ratio, macs / dense_macs, activation_volume(net, input_shape) / dense_volume,
                               ratio, dense_macs, macs, dense_params, count_params(net), importance, removed)

    if mac_ratio >= 1.0 - tolerance:
        net = copy.deepcopy(model).eval()
        return net, report(net, 0.0, {})
    # Up to the floor's ceiling MACs fall monotonically (about quadratically) with the ratio: bisect on it.
    lo, hi = 0.0, 1.0
    best: tuple[float, nn.Module, float, dict] | None = None
    for _ in range(max_iterations):
        ratio = (lo + hi) / 2
        net, removed, ceiling = _prune(model, input_shape, ratio, importance)
        macs = count_macs(net, input_shape)
        error = abs(macs - target) / target
        if best is None or error < best[0]:
            best = (error, net, ratio, removed)
        if error <= tolerance:
            break
        lo, hi = (ratio, hi) if macs > target else (lo, ratio)
        hi = min(hi, ceiling)
    error, net, ratio, removed = best
    if error > tolerance and not closest:
        raise MagnitudePruningError(f"no channel ratio prunes this network to {mac_ratio:g} of its MACs within "
                                    f"{tolerance:.0%} (closest: {count_macs(net, input_shape) / dense_macs:.4f})")
    return net, report(net, ratio, removed)
