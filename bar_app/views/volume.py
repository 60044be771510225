"""Volume & budget: the network's volume V against the moving budget b, over steps (live through a feed)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from bar_app import live_plot
from bar_app.views.common import Live, chart, live_panel, no_data
from bar_core import figures
from bar_core.history import RunSnapshot


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.has_steps or not snap.v0:
        no_data("The volume V against the budget b")
        planned_schedule(snap, ns)
        return
    live_panel("chart_volume", snap, live, lambda s: panel(s, ns))


def panel(snap: RunSnapshot, ns: str) -> tuple:
    s, lay = snap.steps, snap.layout
    fig = figures.volume(snap, uirevision=ns)
    v0 = lay["v0"]
    b_last = s["budget_b"][np.isfinite(s["budget_b"])]
    n_over = len(snap.over_budget_steps) if snap.summary is None else snap.summary.get("steps_over_budget", 0)
    metric = live_plot.metric
    return fig, [metric("V / V0 now", f"{s['volume'][-1] / v0:.4f}"),
                 metric("b / V0 now", f"{b_last[-1] / v0:.4f}" if len(b_last) else "—", help="the moving budget"),
                 metric("Target B", f"{lay['budget_volume'] / v0:.4f}", f"{v0 / lay['budget_volume']:.3g}× pruning"),
                 metric("Steps with V ≥ b", f"{n_over}")]


def planned_schedule(snap: RunSnapshot | None, ns: str) -> None:
    """Before any step: the budget b that this run (or the set-up in the sidebar) will follow."""
    cfg = snap.config if snap is not None and snap.config else {
        "budget": st.session_state.get("cfg_budget"), "schedule": st.session_state.get("cfg_schedule"),
        "prune_epochs": st.session_state.get("cfg_prune_epochs")}
    fig = figures.schedule(cfg, uirevision=ns)
    if fig is None:
        st.caption("The planned budget schedule appears here for a valid budget and schedule with at least one prune epoch.")
        return
    chart(fig, "chart_schedule", snap)
