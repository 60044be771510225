"""The budget barrier f(V, a, b) and the schedule that moves the budget b down to B·V0.

BAR multiplies the sparsity loss by f: no pressure while the volume V is at or below a (just under
the final budget), growing pressure as V approaches the current budget b, and an infinite wall at b.
Moving b smoothly from above V0 down to B·V0 lets the network shed volume gradually.
"""
from __future__ import annotations

import math

SCHEDULES = ("sigmoid", "exp", "linear")
DEFAULT_K = {"sigmoid": 10.0, "exp": 4.0, "linear": 0.0}
MARGIN = 1e-4   # m: a sits this fraction of V0 (times 1 + τ) below the final budget
TAU = 0.01      # τ: b starts at (1 + τ)·V0, a little above the initial volume
# Finite stand-in for f = +∞ in the loss (V can overshoot b between steps), at the default λ = 2e-6.
# Not 1e10: such a spike is one giant gradient that every gate's Adam remembers, so all gates fall
# together; 1e4 still dwarfs every data gradient near b. What competes with the data term is λ·f, so
# without a cap of its own a run's cap is WALL_PRESSURE / λ: the same wall for every λ (wall_cap).
DEFAULT_CAP = 1e4
WALL_PRESSURE = 2e-6 * DEFAULT_CAP


def barrier(V: float, a: float, b: float) -> float:
    """f(V, a, b) = 0 if V ≤ a;  (V − a)² / ((b − a)(b − V)) if a < V < b;  +∞ if V ≥ b.

    With x = (V − a)/(b − a) this is x²/(1 − x): f(a) = 0 and f'(a) = 0 (pressure switches on
    smoothly), convex and increasing, with a vertical asymptote at b.
    """
    if not b > a:
        raise ValueError(f"barrier needs b > a, got a={a}, b={b}")
    if V <= a:
        return 0.0
    if V >= b:
        return math.inf
    return (V - a) ** 2 / ((b - a) * (b - V))


def wall_cap(lam: float) -> float:
    """The cap of f when a run sets none: WALL_PRESSURE / λ, so that λ·f at the wall is 0.02 whatever λ
    (the paper's wall is infinite for every λ); 1e4 at the default λ = 2e-6, DEFAULT_CAP when λ = 0."""
    return WALL_PRESSURE / lam if lam > 0 else DEFAULT_CAP


def capped_barrier(V: float, a: float, b: float, cap: float = DEFAULT_CAP) -> float:
    """f(V, a, b) clipped to `cap`, the value the loss uses: an infinite loss would wreck training."""
    return min(barrier(V, a, b), cap)


# How fast f may rise per step. Gates under Adam answer any f that swamps the data term at full speed,
# so a jump of f closes every gate together; at 1.3× a step f goes from 1 to 1e4 in 36 steps, about
# the steps a gate needs to close (lead_steps), and V falls in the order of the gates' usefulness.
RAMP = 1.3


def ramped_barrier(f: float, f_before: float, ramp: float = RAMP) -> float:
    """f_t = min(f(V, a, b), ramp · max(f_{t−1}, 1)): the barrier rises at most `ramp`× a step, from at
    least 1, and falls at once. The wall is still a wall: over b, f keeps rising to its cap."""
    return min(f, ramp * max(f_before, 1.0))


RISE = 1.02


def rising_cap(cap: float, extra_steps: int, rise: float = RISE) -> float:
    """cap · rise^k at the k-th extra prune step (V still over B·V0 when the schedule ended): there the
    paper's f is infinite, and a fixed cap the data term can hold off for good would leave V over
    budget; ×1.02 a step is ×52 after the 200 extra steps allowed by default."""
    return cap * rise ** extra_steps


def lead_steps(gate_lr: float, log_alpha_max: float, closed_log_alpha: float) -> int:
    """L = ⌈(log α_max − log α_closed) / η⌉: the prune steps a gate needs to close from the top.

    With Adam a gate moves about η (its learning rate) in log α per step, and V only falls when a
    gate crosses log α_closed (−ln 11 by default). A barrier that sees b only as it is now pushes
    too late: V meets the wall while b is falling fastest. Evaluating f at b(p + L/T), the budget
    L of the T prune steps ahead, starts the pressure as early as the gates need.
    """
    if not gate_lr > 0:
        raise ValueError(f"lead_steps needs a gate learning rate > 0, got {gate_lr}")
    return max(math.ceil((log_alpha_max - closed_log_alpha) / gate_lr - 1e-9), 0)


def barrier_start(v0: float, budget: float, margin: float = MARGIN, tau: float = TAU) -> float:
    """a = B·V0 − m·(1 + τ)·V0: constant, just below the final budget B·V0."""
    return budget * v0 - margin * (1.0 + tau) * v0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def schedule_progress(progress: float, kind: str = "sigmoid", k: float | None = None) -> float:
    """π(p): how far b has moved from its start to the final budget, for p in [0, 1].

        sigmoid: π(p) = (σ(k(p − ½)) − c)/(1 − 2c), c = σ(−k/2)   (k = 10)
        exp:     π(p) = (1 − e^{−kp})/(1 − e^{−k})                 (k = 4)
        linear:  π(p) = p
    Every kind gives π(0) = 0 and π(1) = 1; p is clamped to [0, 1] so b stays at B·V0 afterwards.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; allowed: {', '.join(SCHEDULES)}")
    p = min(max(float(progress), 0.0), 1.0)
    k = DEFAULT_K[kind] if k is None else float(k)
    if kind == "linear":
        return p
    if k <= 0:
        raise ValueError(f"schedule steepness k must be > 0 for {kind!r}, got {k}")
    if kind == "sigmoid":
        c = _sigmoid(-k / 2.0)
        return (_sigmoid(k * (p - 0.5)) - c) / (1.0 - 2.0 * c)
    return (1.0 - math.exp(-k * p)) / (1.0 - math.exp(-k))


def budget_at(progress: float, v0: float, budget: float, kind: str = "sigmoid", k: float | None = None,
              tau: float = TAU) -> float:
    """b(p) = (1 − π(p))·(1 + τ)·V0 + π(p)·B·V0: from just above V0 down to the final budget."""
    pi = schedule_progress(progress, kind, k)
    return (1.0 - pi) * (1.0 + tau) * v0 + pi * budget * v0
