"""Barrier sandbox: sliders for V, B, the schedule, the pruning progress p (which sets b), the margin
m (which sets a) and λ move the barrier, the schedule and the pressure at once, with no training
(bar_core/sandbox.py draws them). A button loads the shown run's settings and its latest prune step."""
from __future__ import annotations

import streamlit as st

from bar_app.text import literal
from bar_app.views.common import Live, chart, remember, restore
from bar_core import figures
from bar_core.barrier import DEFAULT_K, MARGIN, SCHEDULES, TAU, wall_cap
from bar_core.history import RunSnapshot
from bar_core.sandbox import SandboxState, from_run, sandbox_figure, validate

LAMBDAS = (0.0, 1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 2e-6, 5e-6, 1e-5, 3e-5, 1e-4, 1e-3)
MARGINS = (1e-4, 1e-3, 1e-2, 0.02, 0.05, 0.1)
DEFAULTS = {"sb_volume": 0.6, "sb_budget": 0.25, "sb_schedule": "sigmoid", "sb_k": DEFAULT_K["sigmoid"],
            "sb_progress": 0.5, "sb_margin": MARGIN, "sb_lam": 2e-6}
KEYS = tuple(DEFAULTS)
# the values a loaded run brought that are not among the sliders' stops (a run's λ = 4e-6, say)
EXTRA = "sb_extra_values"


def _reset() -> None:
    st.session_state.update(DEFAULTS)
    st.session_state.update(sb_tau=TAU, sb_cap=None, sb_loaded=None)  # no cap of its own: 0.02/λ, as in training


def _schedule_changed() -> None:
    kind = st.session_state["sb_schedule"]
    st.session_state["sb_k"] = DEFAULT_K.get(kind) or DEFAULT_K["sigmoid"]


def load_run(snap: RunSnapshot) -> None:
    """Button callback: the run's B, schedule, k, m, τ, λ and cap, and V and p at its latest prune step."""
    s = from_run(snap.config, figures.barrier_point(snap))
    extra = st.session_state.setdefault(EXTRA, {"sb_lam": set(), "sb_margin": set()})
    extra["sb_lam"].add(s.lam)
    extra["sb_margin"].add(s.margin)
    st.session_state.update(sb_volume=min(max(s.volume, 0.0), 1.0), sb_budget=s.budget, sb_schedule=s.schedule,
                            sb_k=s.schedule_k if s.schedule_k is not None else DEFAULT_K[s.schedule],
                            sb_progress=s.progress, sb_margin=s.margin, sb_lam=s.lam, sb_tau=s.tau,
                            sb_cap=s.cap if isinstance((snap.config or {}).get("barrier_cap"), (int, float)) else None,
                            sb_loaded=snap.run_dir or "the live run")


def _cap() -> float:
    """A loaded run's cap, else the one training uses for the chosen λ (barrier.wall_cap)."""
    cap = st.session_state.get("sb_cap")
    return wall_cap(float(st.session_state["sb_lam"])) if cap is None else float(cap)


def _stops(values: tuple, key: str) -> list:
    return sorted(set(values) | st.session_state.get(EXTRA, {}).get(key, set()))


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    for k, v in DEFAULTS.items():
        restore(k)
        st.session_state.setdefault(k, v)
    st.session_state.setdefault("sb_tau", TAU)
    st.session_state.setdefault("sb_cap", None)
    can_load = snap is not None and bool(snap.v0)
    b = st.columns([2, 2, 3], vertical_alignment="center")
    b[0].button("Load the shown run's values", key="sb_load", disabled=not can_load, width="stretch",
                on_click=load_run, args=(snap,) if can_load else None,
                help="B, schedule, k, m, τ, λ and cap from the run's settings; V and p at its latest prune step."
                if can_load else "Start a run or open a past one first.")
    b[1].button("Reset the sliders", key="sb_reset", on_click=_reset, width="stretch")
    if st.session_state.get("sb_loaded"):
        b[2].caption(f"Loaded from {literal(st.session_state['sb_loaded'])} (τ = {st.session_state['sb_tau']:g}, "
                     f"cap = {_cap():g}); move any slider to explore from there.")
    c = st.columns([3, 3, 2])
    c[0].slider("V / V0 (the network's volume, held here)", 0.0, 1.0, step=0.001, key="sb_volume", format="%.3f")
    c[1].slider("Pruning progress p (moves b along the schedule)", 0.0, 1.0, step=0.01, key="sb_progress")
    c[2].segmented_control("Schedule", SCHEDULES, key="sb_schedule", required=True, on_change=_schedule_changed)
    kind = st.session_state["sb_schedule"]
    c = st.columns(4)
    c[0].slider("Final budget B", 0.01, 1.0, step=0.005, key="sb_budget", format="%.4f")
    c[1].select_slider("λ (weight of the sparsity loss)", _stops(LAMBDAS, "sb_lam"), key="sb_lam",
                       format_func=lambda v: f"{v:g}")
    c[2].select_slider("Margin m (a = B − m(1+τ), in V0)", _stops(MARGINS, "sb_margin"), key="sb_margin",
                       format_func=lambda v: f"{v:g}")
    if kind != "linear":
        c[3].slider(f"Steepness k of the {kind} schedule", 0.5, 20.0, step=0.5, key="sb_k")
    remember(*KEYS)
    state = SandboxState(volume=float(st.session_state["sb_volume"]), budget=float(st.session_state["sb_budget"]),
                         schedule=kind, schedule_k=None if kind == "linear" else float(st.session_state["sb_k"]),
                         progress=float(st.session_state["sb_progress"]), lam=float(st.session_state["sb_lam"]),
                         margin=float(st.session_state["sb_margin"]), tau=float(st.session_state["sb_tau"]),
                         cap=_cap())
    problem = validate(state)
    if problem:
        st.warning(f"This setting cannot be drawn: {problem}.")
    else:
        chart(sandbox_figure(state, uirevision="sandbox"), "chart_sandbox")
        m = st.columns(4)
        m[0].metric("a / V0", f"{state.a:.4f}")
        m[1].metric("b / V0", f"{state.b:.4f}")
        m[2].metric("f(V, a, b)", "+∞" if state.f == float("inf") else f"{state.f:.4g}")
        m[3].metric("pressure λ·f (as the loss uses it)", f"{state.pressure:.3g}",
                    help=f"λ·min(f, cap), cap = {state.cap:g}: the weight of L_S in L = L_D + λ·f·L_S")
        st.caption(state.region + ".")
