"""A BatchNorm followed by a Hard Concrete gate per channel: the unit BAR prunes.

The gate lives inside the BatchNorm module (as `bn.gate`) so that a gated network keeps the same
module tree and parameter names as its dense twin: a dense checkpoint loads into a gated model with
only the gates' log α missing, and torchvision's blocks take it as their `norm_layer`.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..hard_concrete import BETA, GAMMA, ZETA, HardConcreteGate, draw_gates


class _GatedBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm and a gate per example and channel in one step: y = z ⊙ (w·x̂ + b).

    Forward: torch's batch-statistics kernel without affine gives x̂ = (x − μ)/σ, then one addcmul
    with the per-(n, c) scale w·z and shift b·z: as many passes over the activations as a plain
    BatchNorm. Backward, written out from two per-(n, c) sums S1 = Σ_hw g and S2 = Σ_hw g·x̂:

        ∂L/∂z = w·S2 + b·S1,   ∂L/∂w = B = Σ_n z·S2,   ∂L/∂b = A = Σ_n z·S1,
        ∂L/∂x = (w/σ)·(z·g − A/M − x̂·B/M),   M = N·H·W

    (the usual BatchNorm backward with z·w·g as ∂L/∂x̂). BatchNorm followed by x·z costs three more
    full passes (x·z; g·z and Σ g·x backward); on the default model this step takes training with
    gates from 0.83 to 0.92 of the dense network's speed (bench/bench_core.py).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, z: Tensor, running_mean: Tensor | None,
                running_var: Tensor | None, momentum: float, eps: float) -> Tensor:
        if running_mean is None:
            x_hat, _, inv_std = torch.ops.aten._native_batch_norm_legit.no_stats(x, None, None, True, momentum, eps)
        else:
            x_hat, _, inv_std = torch.ops.aten._native_batch_norm_legit(
                x, None, None, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x_hat, inv_std, weight, bias, z)
        return torch.addcmul((bias * z)[:, :, None, None], x_hat, (weight * z)[:, :, None, None])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x_hat, inv_std, weight, bias, z = ctx.saved_tensors
        s1 = grad.sum((2, 3))
        s2 = (grad * x_hat).sum((2, 3))
        grad_z = torch.addcmul(bias * s1, weight, s2)
        a, b = (z * s1).sum(0), (z * s2).sum(0)
        k = inv_std * weight  # w/σ
        m = grad.numel() // grad.shape[1]
        grad_x = torch.addcmul((k * a).mul_(-1 / m)[None, :, None, None], x_hat,
                               (k * b).mul_(-1 / m)[None, :, None, None])
        grad_x.addcmul_(grad, (k * z)[:, :, None, None])
        return grad_x, b, a, grad_z, None, None, None, None


class GatedBatchNorm2d(nn.BatchNorm2d):
    """y = z ⊙ BN(x): the gate comes after the normalisation, which would otherwise undo it.

    Training with sampled gates runs BatchNorm and gate as one step (`_GatedBatchNorm`); with
    deterministic gates (eval mode, or frozen for fine-tuning) ẑ is folded into the affine
    parameters, so the gate costs nothing at all.
    """

    def __init__(self, num_features: int, *, gate_init: float = 3.0, beta: float = BETA,
                 gamma: float = GAMMA, zeta: float = ZETA, **bn_kwargs):
        super().__init__(num_features, **bn_kwargs)
        self.gate = HardConcreteGate(num_features, gate_init, beta, gamma, zeta)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        running_mean = self.running_mean if track else None
        running_var = self.running_var if track else None
        weight = self.weight if self.weight is not None else x.new_ones(self.num_features)
        bias = self.bias if self.bias is not None else x.new_zeros(self.num_features)
        if self.training and not self.gate.frozen:
            if x.shape[0] * x.shape[2] * x.shape[3] == 1:
                raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")
            z = self.gate.take_sample(x.shape[0])
            return _GatedBatchNorm.apply(x, weight, bias, z, running_mean, running_var, factor, self.eps)
        z = self.gate.deterministic()
        return nn.functional.batch_norm(x, running_mean, running_var, weight * z, bias * z,
                                        use_batch_stats, factor, self.eps)


def attach_gate_sampler(model: nn.Module) -> nn.Module:
    """Sample all of `model`'s training-time gates in one op at the start of each forward pass.

    `draw_gates` before the forward (one noise tensor, one sampling op), and the unused samples
    dropped after it, even when the forward fails, so no gate can ever reuse an old sample.
    """
    if not getattr(model, "_bar_gate_sampler", False):
        model.register_forward_pre_hook(_draw_before_forward)
        model.register_forward_hook(_forget_after_forward, always_call=True)
        model._bar_gate_sampler = True
    return model


def _draw_before_forward(model: nn.Module, args: tuple) -> None:
    if args and isinstance(args[0], Tensor) and args[0].dim() > 0:
        draw_gates((g for _, g in gates(model)), args[0].shape[0])


def _forget_after_forward(model: nn.Module, args: tuple, output) -> None:
    for _, g in gates(model):
        g._drawn = None


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
