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

# The one-pass batch statistics below lose about 1e-7·(μ/σ)² of the variance to cancellation;
# channels whose mean is further than this many standard deviations from 0 take torch's kernel.
_MAX_MEAN_OVER_STD = 10.0
# torch's channels-last statistics kernel works across channels: from this many on it beats one-pass
# sums, below it is about twice as slow (docs/performance.md has the timings per map shape).
_MIN_CHANNELS_FOR_TORCH_STATS = 32


def _one_pass_stats(x: Tensor) -> tuple[Tensor, Tensor] | None:
    """(μ, biased σ²) per channel from per-(n, c) sums of x and x², or None when a channel's |μ|/σ
    is too large for E[x²] − μ² (then torch's Welford kernel is used).

    One read of the activations instead of torch's CPU kernel, which also writes x̂: about 1.5 % of
    the gated network's training speed on the default model."""
    m = x.numel() // x.shape[1]
    mean = x.sum((2, 3)).sum(0).div_(m)
    mean_sq = mean * mean
    var = (x * x).sum((2, 3)).sum(0).div_(m).sub_(mean_sq).clamp_min_(0.0)
    if bool((mean_sq > var * _MAX_MEAN_OVER_STD ** 2).any()):
        return None
    return mean, var


def _batch_stats(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                 momentum: float) -> tuple[Tensor, Tensor] | None:
    """(μ, biased σ²) per channel of a CPU batch, with the running statistics updated as
    BatchNorm does (running σ² unbiased); None when only torch's normalising kernel will do.

    Wide maps laid out channels-last (which includes any 1×1 map): `torch.batch_norm_update_stats`,
    one op, as stable as BatchNorm itself (see the test with a channel centred at 1000). Narrow maps
    and other NCHW maps: `_one_pass_stats`, faster there."""
    if x.shape[1] >= _MIN_CHANNELS_FOR_TORCH_STATS and x.is_contiguous(memory_format=torch.channels_last):
        return torch.batch_norm_update_stats(x, running_mean, running_var, momentum)
    stats = _one_pass_stats(x)
    if stats is not None and running_mean is not None:
        mean, var = stats
        m = x.numel() // x.shape[1]
        running_mean.lerp_(mean, momentum)
        running_var.lerp_(var * (m / max(m - 1, 1)), momentum)  # unbiased, as BatchNorm keeps it
    return stats


class _GatedBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm and a gate per example and channel in one step: y = z ⊙ (w·x̂ + b).

    Forward: batch statistics μ, σ, then one addcmul y = x·(w z/σ) + (b − w μ/σ)·z with per-(n, c)
    scale and shift: as many passes over the activations as a plain BatchNorm. Backward, written
    out from two per-(n, c) sums S1 = Σ_hw g and S2 = Σ_hw g·x̂:

        ∂L/∂z = w·S2 + b·S1,   ∂L/∂w = B = Σ_n z·S2,   ∂L/∂b = A = Σ_n z·S1,
        ∂L/∂x = (w/σ)·(z·g − A/M − x̂·B/M),   M = N·H·W

    (the usual BatchNorm backward with z·w·g as ∂L/∂x̂). BatchNorm followed by x·z costs three more
    full passes (x·z; g·z and Σ g·x backward): on the default model, training with gates ran at
    0.83 of the dense network's speed that way and at 0.88–0.91 this way (bench/bench_core.py).
    On CPU the statistics come from `_batch_stats` and the step works on x itself (x̂ is never
    stored); elsewhere, for a channel too badly centred for one-pass statistics, or for bf16/fp16
    activations (autocast), torch's kernel gives x̂ and the same formulas run on it with μ = 0, σ = 1.
    Low-precision activations stay low-precision in and out, as with BatchNorm; the per-channel
    sums and everything of size N×C are float32.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, z: Tensor, running_mean: Tensor | None,
                running_var: Tensor | None, momentum: float, eps: float) -> Tensor:
        # one-pass statistics need float32 or better (bf16 maps take torch's kernel), and they check
        # their centring on the host, which would break a torch.compile graph at every layer
        own_stats = x.device.type == "cpu" and x.dtype.itemsize >= 4 and not torch.compiler.is_compiling()
        stats = _batch_stats(x, running_mean, running_var, momentum) if own_stats else None
        if stats is not None:
            mean, var = stats
            inv_std = var.add_(eps).rsqrt_()
            saved, saved_mean, saved_inv_std = x, mean, inv_std   # x̂ = (x − μ)·(1/σ)
        else:
            if running_mean is None:
                x_hat, _, inv_std = torch.ops.aten._native_batch_norm_legit.no_stats(
                    x, None, None, True, momentum, eps)
            else:
                x_hat, _, inv_std = torch.ops.aten._native_batch_norm_legit(
                    x, None, None, running_mean, running_var, True, momentum, eps)
            saved, saved_mean, saved_inv_std = x_hat, torch.zeros_like(inv_std), torch.ones_like(inv_std)
        ctx.save_for_backward(saved, saved_mean, saved_inv_std, inv_std, weight, bias, z)
        # y = z·(w·(t − μ_t)/σ_t + b) for the saved t, as one addcmul
        scale = weight * saved_inv_std
        shift = torch.addcmul(bias, scale, saved_mean, value=-1)
        n, c = z.shape
        dt = x.dtype  # per-(n, c) factors in the activations' precision: a bf16 map stays bf16
        return torch.addcmul((shift * z).to(dt).view(n, c, 1, 1), saved, (scale * z).to(dt).view(n, c, 1, 1))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        t, t_mean, t_inv_std, inv_std, weight, bias, z = ctx.saved_tensors  # x̂ = (t − t_mean)·t_inv_std
        acc = z.dtype  # sums over H·W in float32 even for bf16 maps
        s1 = grad.sum((2, 3), dtype=acc)
        s2 = (grad * t).sum((2, 3), dtype=acc).sub_(s1 * t_mean).mul_(t_inv_std)  # Σ_hw g·x̂
        grad_z = torch.addcmul(bias * s1, weight, s2)
        a, b = (z * s1).sum(0), (z * s2).sum(0)
        k = inv_std * weight  # w/σ
        m = grad.numel() // grad.shape[1]
        n, c = z.shape
        coef_t = (k * b).mul_(t_inv_std).mul_(-1 / m)  # −(w/σ)·B/M, per unit of x̂, moved onto t
        const = (k * a).mul_(-1 / m).addcmul_(coef_t, t_mean, value=-1)
        dt = t.dtype
        grad_x = torch.addcmul(const.to(dt).view(1, c, 1, 1), t, coef_t.to(dt).view(1, c, 1, 1))
        grad_x.addcmul_(grad, (k * z).to(dt).view(n, c, 1, 1))
        return grad_x, b, a, grad_z, None, None, None, None


class _SyncGatedBatchNorm(torch.autograd.Function):
    """`_GatedBatchNorm` over a batch split across torchrun ranks: the statistics and the backward's
    two sums are all-reduced, so each rank computes exactly its share of the single-process step.

    Forward: per-channel Σ(x − K) and Σ(x − K)² (K = the running mean, equal on every rank, keeps
    the one-pass variance free of cancellation), summed over the ranks in float64. Backward: the
    same formulas as `_GatedBatchNorm` with A and B summed over the ranks; ∂L/∂w and ∂L/∂b stay this
    rank's, which DDP then averages like every other gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, z: Tensor, running_mean: Tensor | None,
                running_var: Tensor | None, momentum: float, eps: float) -> Tensor:
        import torch.distributed as dist

        n, c = z.shape
        count = x.numel() // c * dist.get_world_size()
        ref = running_mean.detach().view(1, c, 1, 1) if running_mean is not None else x.new_zeros(1, c, 1, 1)
        d = x - ref
        sums = torch.cat([d.sum((2, 3)).double().sum(0), (d * d).sum((2, 3)).double().sum(0)])
        dist.all_reduce(sums)
        shift_mean = sums[:c] / count
        var = (sums[c:] / count - shift_mean * shift_mean).clamp_min_(0.0).to(x.dtype)
        mean = shift_mean.to(x.dtype) + ref.view(c)
        if running_mean is not None:
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * (count / max(count - 1, 1)), momentum)  # unbiased, as BatchNorm keeps it
        inv_std = (var + eps).rsqrt_()
        ctx.save_for_backward(x, mean, inv_std, weight, bias, z)
        ctx.count = count
        scale = weight * inv_std
        shift = torch.addcmul(bias, scale, mean, value=-1)
        return torch.addcmul((shift * z).view(n, c, 1, 1), x, (scale * z).view(n, c, 1, 1))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        import torch.distributed as dist

        x, mean, inv_std, weight, bias, z = ctx.saved_tensors
        n, c = z.shape
        s1 = grad.sum((2, 3))
        s2 = (grad * x).sum((2, 3)).sub_(s1 * mean).mul_(inv_std)  # Σ_hw g·x̂
        grad_z = torch.addcmul(bias * s1, weight, s2)
        a, b = (z * s1).sum(0), (z * s2).sum(0)
        both = torch.cat([a, b])
        dist.all_reduce(both)
        a_all, b_all = both[:c], both[c:]
        k = inv_std * weight
        m = ctx.count
        coef_x = (k * b_all).mul_(inv_std).mul_(-1 / m)  # −(w/σ)·B/M per unit of x̂, moved onto x
        const = (k * a_all).mul_(-1 / m).addcmul_(coef_x, mean, value=-1)
        grad_x = torch.addcmul(const.view(1, c, 1, 1), x, coef_x.view(1, c, 1, 1))
        grad_x.addcmul_(grad, (k * z).view(n, c, 1, 1))
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
        # Set by bar_core.distributed under torchrun: training statistics over every rank's shard.
        self.sync = False

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
            norm = _SyncGatedBatchNorm if self.sync else _GatedBatchNorm
            return norm.apply(x, weight, bias, z, running_mean, running_var, factor, self.eps)
        z = self.gate.deterministic()
        if self.sync and self.training:  # fine-tuning under torchrun: frozen ẑ, statistics still over all ranks
            return _SyncGatedBatchNorm.apply(x, weight, bias, z.expand(x.shape[0], -1), running_mean, running_var,
                                             factor, self.eps)
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
        n = args[0].shape[0]
        rank, world = getattr(model, "bar_shard", (0, 1))
        draw_gates((g for _, g in gates(model)), n * world)
        if world > 1:  # torchrun: the noise of the whole global batch, this rank's rows of it
            for _, g in gates(model):
                if g._drawn is not None:
                    g._drawn = g._drawn[rank * n:(rank + 1) * n]


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
