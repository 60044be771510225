"""The barrier sandbox: the barrier, the moving budget and the pressure they put on the gates, with no
training. Numbers in, a `SandboxState` and a Figure out; the dashboard's "Barrier sandbox" view moves
them under sliders, and `from_run` reads a run's settings and its latest prune step into them.

Everything is in units of the initial volume V0 (V0 = 1), as the run's own charts draw it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from bar_core.barrier import (
    DEFAULT_CAP,
    DEFAULT_K,
    MARGIN,
    SCHEDULES,
    TAU,
    barrier,
    barrier_start,
    budget_at,
    schedule_progress,
    wall_cap,
)
from bar_core.plots import LINE, _base_layout, _figure, _t, barrier_window


@dataclass(frozen=True)
class SandboxState:
    """One setting of the sandbox and what follows from it (volumes as fractions of V0).

    pressure = λ·min(f, cap): the weight the sparsity loss L_S gets in L = L_D + λ·f·L_S at this V."""
    volume: float          # V / V0
    budget: float          # B, the final budget
    schedule: str
    schedule_k: float | None
    progress: float        # p, how far pruning has gone, in [0, 1]
    lam: float
    margin: float = MARGIN
    tau: float = TAU
    cap: float = DEFAULT_CAP

    @property
    def a(self) -> float:
        """a = B − m(1 + τ) (in V0)."""
        return barrier_start(1.0, self.budget, self.margin, self.tau)

    @property
    def b(self) -> float:
        """b(p) = (1 − π(p))(1 + τ) + π(p)·B (in V0)."""
        return budget_at(self.progress, 1.0, self.budget, self.schedule, self.schedule_k, self.tau)

    @property
    def f(self) -> float:
        """f(V, a, b), uncapped (+∞ at and past the wall)."""
        return barrier(self.volume, self.a, self.b)

    @property
    def pressure(self) -> float:
        """λ·min(f, cap), the sparsity loss's weight as the loss uses it."""
        return self.lam * min(self.f, self.cap)

    @property
    def region(self) -> str:
        """Where V sits, in words."""
        if self.volume <= self.a:
            return "V ≤ a: no pressure, the network just trains"
        if self.volume >= self.b:
            return "V ≥ b: past the wall, f = +∞ and the loss uses the cap"
        x = (self.volume - self.a) / (self.b - self.a)
        return f"a < V < b: V is {100 * x:.0f} % of the way from a to the wall"


def validate(state: SandboxState) -> str | None:
    """Why the state cannot be drawn (one line), or None."""
    if state.schedule not in SCHEDULES:
        return f"schedule {state.schedule!r}: allowed: {', '.join(SCHEDULES)}"
    if not 0 < state.budget <= 1:
        return f"budget B = {state.budget:g}: allowed: 0 < B ≤ 1"
    if state.a <= 0:
        return (f"budget B = {state.budget:g} with margin m = {state.margin:g}: a = B − m(1+τ) = {state.a:.3g} "
                "is not above 0; raise B or lower m")
    if not 0 <= state.progress <= 1:
        return f"progress p = {state.progress:g}: allowed: 0 ≤ p ≤ 1"
    if state.schedule != "linear" and state.schedule_k is not None and state.schedule_k <= 0:
        return f"steepness k = {state.schedule_k:g}: allowed: k > 0"
    return None


def progress_for_budget(b: float, budget: float, schedule: str, k: float | None = None, tau: float = TAU) -> float:
    """The p at which b(p) = b (in V0), by bisection: π is increasing, so b(p) falls from 1 + τ to B.
    A b outside that range gives the nearer end (0 or 1)."""
    start, end = 1.0 + tau, budget
    if b >= start:
        return 0.0
    if b <= end:
        return 1.0
    target = (start - b) / (start - end)  # π(p) wanted
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if schedule_progress(mid, schedule, k) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _number(value, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def from_run(config: dict, point=None) -> SandboxState:
    """The sandbox at a run's settings and, given its `figures.BarrierPoint`, at that step's V and b
    (p from b, so it holds whatever steps the run took). Without a point: V = V0, p = 0."""
    schedule = config.get("schedule") if config.get("schedule") in SCHEDULES else "sigmoid"
    k = config.get("schedule_k")
    k = None if k is None else _number(k, DEFAULT_K[schedule])
    budget = _number(config.get("budget"), 0.25)
    tau = _number(config.get("tau"), TAU)
    volume, progress = 1.0, 0.0
    if point is not None and point.v0:
        volume = point.V / point.v0
        if point.step is not None:
            progress = progress_for_budget(point.b / point.v0, budget, schedule, k, tau)
    lam = _number(config.get("lam"), 2e-6)
    return SandboxState(volume=volume, budget=budget, schedule=schedule, schedule_k=k, progress=progress,
                        lam=lam, margin=_number(config.get("margin"), MARGIN),
                        tau=tau, cap=_number(config.get("barrier_cap"), wall_cap(lam)))


def pressure_along_schedule(state: SandboxState, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(p, λ·min(f(V, a, b(p)), cap)) for the state's V over the whole schedule."""
    ps = np.linspace(0.0, 1.0, n)
    a = state.a
    out = np.empty(n)
    for i, p in enumerate(ps):
        b = budget_at(float(p), 1.0, state.budget, state.schedule, state.schedule_k, state.tau)
        out[i] = state.lam * min(barrier(state.volume, a, b), state.cap)
    return ps, out


# Three panels side by side: the barrier at b(p), the schedule b(p), the pressure along the schedule
_DOMAINS = ([0.0, 0.29], [0.355, 0.645], [0.71, 1.0])


def sandbox_figure(state: SandboxState, uirevision: str | None = None) -> go.Figure:
    """The barrier f(V, a, b) at the state's b with V on it; the schedule b(p) with p and V marked
    (V meets the wall where its line crosses b); and λ·f (capped) for this V along the schedule."""
    a, b, V, f = state.a, state.b, state.volume, state.f
    w = barrier_window(V, a, b)
    v_lo, x_hi, y_top = w.v_lo, w.x_hi, w.y_top
    on_wall = not math.isfinite(f)
    traces = [
        _t("scatter", x=w.V, y=w.f, mode="lines", name="f(V, a, b)", line=dict(color="#6a3d9a", width=2.5),
           xaxis="x", yaxis="y"),
        _t("scatter", x=[V], y=[y_top if on_wall else f], mode="markers", name="V",
           marker=dict(size=13, color=LINE["over"] if on_wall else LINE["V"],
                       symbol="triangle-up" if on_wall else "circle", line=dict(color="white", width=1)),
           xaxis="x", yaxis="y", showlegend=False),
    ]
    ps = np.linspace(0.0, 1.0, 300)
    bs = np.array([budget_at(float(p), 1.0, state.budget, state.schedule, state.schedule_k, state.tau) for p in ps])
    traces += [
        _t("scatter", x=ps, y=bs, mode="lines", name="budget b(p)", line=dict(color=LINE["b"], dash="dash"),
           xaxis="x2", yaxis="y2"),
        _t("scatter", x=[0, 1], y=[V, V], mode="lines", name="V (held)", line=dict(color=LINE["V"], width=1.5),
           xaxis="x2", yaxis="y2"),
        _t("scatter", x=[0, 1], y=[a, a], mode="lines", name="a", line=dict(color=LINE["a"], dash="dot"),
           xaxis="x2", yaxis="y2"),
        _t("scatter", x=[state.progress], y=[b], mode="markers", name="b now", showlegend=False,
           marker=dict(size=11, color=LINE["b"]), xaxis="x2", yaxis="y2"),
    ]
    pp, pressure = pressure_along_schedule(state)
    shown = np.where(pressure > 0, pressure, np.nan)  # a log axis has no 0: no pressure is a gap
    capped = pressure >= state.lam * state.cap * (1 - 1e-12)
    traces += [
        _t("scatter", x=pp, y=shown, mode="lines", name="λ·f for this V", line=dict(color="#6a3d9a"),
           xaxis="x3", yaxis="y3"),
        _t("scatter", x=pp[capped], y=shown[capped], mode="markers", name="V ≥ b (cap)",
           marker=dict(size=4, color=LINE["over"]), xaxis="x3", yaxis="y3"),
    ]
    if state.pressure > 0:
        traces.append(_t("scatter", x=[state.progress], y=[state.pressure], mode="markers", name="now",
                         showlegend=False, marker=dict(size=11, color="#6a3d9a"), xaxis="x3", yaxis="y3"))
    shapes = [dict(type="line", xref="x", yref="y domain", x0=b, x1=b, y0=0, y1=1, line=dict(color=LINE["b"], width=2)),
              dict(type="rect", xref="x", yref="y domain", x0=b, x1=x_hi, y0=0, y1=1, fillcolor=LINE["b"],
                   opacity=0.08, line=dict(width=0)),
              dict(type="line", xref="x", yref="y domain", x0=a, x1=a, y0=0, y1=1,
                   line=dict(color=LINE["a"], width=1.5, dash="dot")),
              dict(type="line", xref="x3", yref="y3 domain", x0=state.progress, x1=state.progress, y0=0, y1=1,
                   line=dict(color="#9e9e9e", width=1, dash="dot"))]
    label = dict(showarrow=False, yanchor="bottom", font=dict(size=12), y=1.02)
    annotations = [
        dict(text=f"f(V, a, b) at p = {state.progress:.2f}", xref="x domain", yref="y domain", x=0, xanchor="left", **label),
        dict(text=f"budget b(p), {state.schedule}", xref="x2 domain", yref="y2 domain", x=0, xanchor="left", **label),
        dict(text=f"pressure λ·f (capped), λ = {state.lam:g}", xref="x3 domain", yref="y3 domain", x=0,
             xanchor="left", **label),
    ]
    if not np.any(pressure > 0):
        annotations.append(dict(text="no pressure anywhere: V ≤ a" if state.volume <= a else "λ = 0: no pressure",
                                xref="x3 domain", yref="y3 domain", x=0.5, y=0.5, showarrow=False,
                                font=dict(size=12, color="#555")))
    # λ = 0 puts no pressure anywhere: a linear axis (a log one has no 0)
    pressure_axis = (dict(type="log", exponentformat="power", range=[math.log10(state.lam * 1e-4), math.log10(state.lam * state.cap * 3)])
                     if state.lam > 0 else dict(range=[0, 1]))
    layout = _base_layout(
        "Barrier sandbox: V, a, b and the pressure on the gates", uirevision, height=400, shapes=shapes,
        annotations=annotations, margin=dict(l=60, r=20, t=70, b=100),
        xaxis=dict(domain=_DOMAINS[0], anchor="y", title="V / V0", range=[v_lo, x_hi]),
        yaxis=dict(anchor="x", title="f", range=[0, y_top]),
        xaxis2=dict(domain=_DOMAINS[1], anchor="y2", title="pruning progress p", range=[0, 1]),
        yaxis2=dict(anchor="x2", title="volume / V0", range=[0, 1.05 + state.tau]),
        xaxis3=dict(domain=_DOMAINS[2], anchor="y3", title="pruning progress p", range=[0, 1]),
        yaxis3=dict(anchor="x3", title="λ·f", **pressure_axis))
    return _figure(traces, layout)
