"""Hard Concrete gates (Louizos, Welling, Kingma, ICLR 2018), one per feature map.

A gate z in [0, 1] is a stretched, clipped binary-Concrete variable with a learnable location
log α per channel, temperature β and stretch limits γ < 0 < 1 < ζ. Stretching below 0 and above 1,
then clipping, puts real probability mass on exactly 0 (channel pruned) and exactly 1 (kept as is),
which is what makes L0-style structured pruning differentiable.

Every function here accepts Python floats or tensors, so the dashboard can plot them with plain
numbers and the training loop can call them on parameters.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
# While pruning, log α is held at or below ln 100 (P(z > 0) = 0.998): a gate the data term pushed
# higher would need ever more steps to close when the budget comes down (docs/method.md).
LOG_ALPHA_MAX = math.log(100.0)
# Uniform noise is kept away from 0 and 1 so that log u and log(1 - u) stay finite.
NOISE_EPS = 1e-6

Number = float | Tensor


def _as_tensor(x: Number) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(float(x), dtype=torch.float64)


def _out(result: Tensor, *inputs: Number) -> Number:
    """Return a float when every input was a plain number, else the tensor."""
    if any(isinstance(x, Tensor) for x in inputs):
        return result
    return float(result)


def prob_open(log_alpha: Number, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> Number:
    """P(z > 0) = σ(log α − β·ln(−γ/ζ)), the probability that the channel is alive.

    With the defaults this is σ(log α + β·ln 11). It is the term the sparsity loss L_S sums, and
    ∂P/∂log α = P(1 − P), so closed gates (P near 0) stop receiving sparsity gradient.
    """
    shift = beta * math.log(-gamma / zeta)
    return _out(torch.sigmoid(_as_tensor(log_alpha) - shift), log_alpha)


def prob_zero(log_alpha: Number, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> Number:
    """P(z = 0) = 1 − P(z > 0): the mass the stretch puts below 0 and clipping moves to exactly 0."""
    shift = beta * math.log(-gamma / zeta)
    # σ(−x) rather than 1 − σ(x): no cancellation for large log α.
    return _out(torch.sigmoid(shift - _as_tensor(log_alpha)), log_alpha)


def prob_one(log_alpha: Number, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> Number:
    """P(z = 1) = σ(log α − β·ln((1 − γ)/(ζ − 1))), the mass clipped to exactly 1."""
    shift = beta * math.log((1.0 - gamma) / (zeta - 1.0))
    return _out(torch.sigmoid(_as_tensor(log_alpha) - shift), log_alpha)


def icdf(log_alpha: Number, eps: Number, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> Number:
    """The inverse CDF g(log α, ε) of the Hard Concrete distribution, ε ~ U(0, 1):

        s = σ((ln ε − ln(1 − ε) + log α) / β),   s̄ = s·(ζ − γ) + γ,   z = min(1, max(0, s̄)).

    Flat at 0 for small ε (the gate is closed), a sigmoid-like rise, flat at 1; a larger log α
    shifts the rise to the left. Training samples gates by feeding uniform noise through it.
    """
    la, e = _as_tensor(log_alpha), _as_tensor(eps)
    dtype = torch.promote_types(la.dtype, e.dtype)
    la, e = la.to(dtype), e.to(dtype)
    s = torch.sigmoid((torch.log(e) - torch.log1p(-e) + la) / beta)
    return _out((s * (zeta - gamma) + gamma).clamp(0.0, 1.0), log_alpha, eps)


def test_gate(log_alpha: Number, gamma: float = GAMMA, zeta: float = ZETA) -> Number:
    """Deterministic gate used at test time: ẑ = min(1, max(0, σ(log α)·(ζ − γ) + γ)).

    ẑ > 0 ⇔ log α > −ln 11 with the defaults: this is the hard count the volume V uses. Kept
    channels with ẑ < 1 stay scaled by ẑ (a pruned network must fold ẑ in, not round it up).
    """
    return _out((torch.sigmoid(_as_tensor(log_alpha)) * (zeta - gamma) + gamma).clamp(0.0, 1.0), log_alpha)


test_gate.__test__ = False  # not a pytest test, despite its name


def closed_threshold(gamma: float = GAMMA, zeta: float = ZETA) -> float:
    """The log α below which the test gate is exactly 0: logit(−γ/(ζ − γ)) (= −ln 11 by default)."""
    p = -gamma / (zeta - gamma)
    return math.log(p / (1.0 - p))


def open_threshold(gamma: float = GAMMA, zeta: float = ZETA) -> float:
    """The log α above which the test gate is exactly 1: logit((1 − γ)/(ζ − γ)) (= ln 11 by default)."""
    p = (1.0 - gamma) / (zeta - gamma)
    return math.log(p / (1.0 - p))


class _HardConcreteSample(torch.autograd.Function):
    """z = g(log α, u) for a block of uniform noise u (N×C), with the backward written out by hand:

        s = σ((logit u + log α)/β),   s̄ = s·(ζ − γ) + γ,   z = min(1, max(0, s̄)),
        ∂z/∂log α = (ζ − γ)/β · s(1 − s) where 0 < s̄ < 1, and 0 where clipping holds z at 0 or 1.

    Autograd through `icdf` records about ten small ops per gate and step; this records one, which
    matters when they are repeated for every layer of a small network.
    """

    @staticmethod
    def forward(ctx, log_alpha: Tensor, u: Tensor, beta: float, gamma: float, zeta: float) -> Tensor:
        s = torch.sigmoid((torch.logit(u) + log_alpha) / beta)
        s_bar = s * (zeta - gamma) + gamma
        inside = (s_bar > 0) & (s_bar < 1)
        ctx.save_for_backward(s * (1 - s) * inside)
        ctx.slope = (zeta - gamma) / beta
        return s_bar.clamp(0.0, 1.0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_z: Tensor):
        (ds,) = ctx.saved_tensors
        return (grad_z * ds).sum(0) * ctx.slope, None, None, None, None


def draw_gates(gates: Iterable[HardConcreteGate], batch_size: int) -> None:
    """Sample the training-time gates of many layers at once, ahead of a forward pass.

    Gates that share β, γ, ζ, device, dtype and noise generator get one noise tensor and one sampling
    op between them instead of a dozen small ops each; each gate takes its slice on its next forward
    (`take_sample`). Gates in eval mode or frozen get nothing and use their test gate as usual.
    On the default model (9 gates) this is worth about 1.6 % of training images/s.
    """
    groups: dict[tuple, list[HardConcreteGate]] = {}
    for g in gates:
        g._drawn = None
        if g.training and not g.frozen:
            la = g.log_alpha
            key = (g.beta, g.gamma, g.zeta, la.device, la.dtype, id(g.generator))
            groups.setdefault(key, []).append(g)
    for members in groups.values():
        first = members[0]
        log_alpha = torch.cat([g.log_alpha for g in members])
        u = torch.empty(batch_size, log_alpha.numel(), device=log_alpha.device, dtype=log_alpha.dtype)
        u.uniform_(NOISE_EPS, 1.0 - NOISE_EPS, generator=first.generator)
        z = _HardConcreteSample.apply(log_alpha, u, first.beta, first.gamma, first.zeta)
        for g, z_g in zip(members, z.split([g.num_channels for g in members], dim=1)):
            g._drawn = z_g


class HardConcreteGate(nn.Module):
    """Multiplies each of `num_channels` feature maps by its own Hard Concrete gate.

    Training mode: z = g(log α, u) with one u per example and channel (N×C); the lower-variance
    estimator of Louizos et al., and gradients reach log α through the reparametrisation.
    Eval mode, or `frozen` (the fine-tune phase trains at the reached architecture): the
    deterministic test gate ẑ, the same for every example.

    Placed after a BatchNorm: gating before a training-mode BN would be re-normalised away.
    """

    def __init__(self, num_channels: int, init_log_alpha: float = 3.0, beta: float = BETA,
                 gamma: float = GAMMA, zeta: float = ZETA):
        super().__init__()
        if not (gamma < 0.0 and zeta > 1.0 and beta > 0.0):
            raise ValueError(f"Hard Concrete needs gamma < 0 < 1 < zeta and beta > 0, got "
                             f"beta={beta}, gamma={gamma}, zeta={zeta}")
        self.num_channels = num_channels
        self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)
        self.log_alpha = nn.Parameter(torch.full((num_channels,), float(init_log_alpha)))
        self.frozen = False
        # Noise source; the trainer sets its own so that nothing else in the process (a dashboard
        # thread, a test) can change a run by drawing from torch's global generator.
        self.generator: torch.Generator | None = None
        # This step's sample when `draw_gates` prepared one for the whole network (else None).
        self._drawn: Tensor | None = None

    def extra_repr(self) -> str:
        return f"{self.num_channels}, beta={self.beta:.3g}, gamma={self.gamma}, zeta={self.zeta}"

    def sample(self, batch_size: int) -> Tensor:
        """Training-time gates z = g(log α, u), shape (batch_size, C), differentiable in log α."""
        return _HardConcreteSample.apply(self.log_alpha, self.noise(batch_size), self.beta, self.gamma, self.zeta)

    def take_sample(self, batch_size: int) -> Tensor:
        """This step's training-time gates: the sample `draw_gates` prepared, else a fresh one."""
        z, self._drawn = self._drawn, None
        if z is None or z.shape[0] != batch_size:
            z = self.sample(batch_size)
        return z

    def deterministic(self) -> Tensor:
        """Test-time gates ẑ, shape (C,)."""
        return test_gate(self.log_alpha, self.gamma, self.zeta)

    def noise(self, batch_size: int) -> Tensor:
        """u ~ U(ε, 1 − ε), one per example and channel."""
        return torch.empty(batch_size, self.num_channels, device=self.log_alpha.device,
                           dtype=self.log_alpha.dtype).uniform_(NOISE_EPS, 1.0 - NOISE_EPS, generator=self.generator)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not self.frozen:
            z = self.take_sample(x.shape[0])  # (N, C): one gate per example and channel
        else:
            z = self.deterministic().unsqueeze(0)  # (1, C): the same for every example
        return x * z.to(x.dtype).view(*z.shape, *([1] * (x.dim() - 2)))

    def prob_open(self) -> Tensor:
        """P(z > 0) per channel, differentiable in log α (feeds the sparsity loss)."""
        return prob_open(self.log_alpha, self.beta, self.gamma, self.zeta)

    def open_mask(self) -> Tensor:
        """Channels whose test gate is non-zero: what survives pruning (no gradient)."""
        with torch.no_grad():
            return self.deterministic() > 0

    @torch.no_grad()
    def constrain(self, log_alpha_max: float) -> None:
        """Clip log α to at most `log_alpha_max` (after an optimiser step): a bound on how far open a
        gate can be, so that every gate can close within a known number of steps."""
        self.log_alpha.clamp_(max=log_alpha_max)

    @torch.no_grad()
    def keep_open(self, mask: Tensor) -> None:
        """Hold the channels in `mask` open (after an optimiser step): log α at least just above the
        closed threshold, where the test gate is still > 0."""
        if bool(mask.any()):
            # 1e-4 above: float32 rounding keeps the test gate > 0 there
            floor = closed_threshold(self.gamma, self.zeta) + 1e-4
            self.log_alpha[mask] = self.log_alpha[mask].clamp(min=floor)

    def lift(self, channel: int) -> None:
        """Open one channel fully (log α at least the open threshold, test gate 1): a channel held just
        above the closed threshold passes its maps at about 1e-5 of their size in test."""
        self.log_alpha[channel] = max(float(self.log_alpha.detach()[channel]), open_threshold(self.gamma, self.zeta))

    def num_open(self) -> int:
        return int(self.open_mask().sum())
