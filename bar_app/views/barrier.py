"""Barrier: the barrier f(V, a, b) at a prune step, with the network's volume on it. While training it
follows the latest step through a feed; a slider looks back at an earlier one."""
from __future__ import annotations

import streamlit as st

from bar_app import live_plot
from bar_app.views.common import (
    Live,
    chart,
    follow_again,
    follow_value,
    live_panel,
    look_back,
    no_data,
    remember,
    stop_following,
)
from bar_core import figures, results
from bar_core.history import RunSnapshot


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.v0:
        no_data("The barrier curve with the network's volume on it")
        return
    method = snap.config.get("method", "bar")
    if method == "magnitude":
        st.info("This run was pruned once, before its first step, by channel importance (Torch-Pruning) to a MAC "
                "target, then fine-tuned: there is no barrier and no budget, so there is no curve to show. The "
                "Barrier sandbox shows what BAR's barrier would do.")
        return
    if method != "bar":
        st.info("This run trains with L0 regularisation (Louizos et al., 2018): L = L_D + λ·L_S, with no barrier "
                "and no budget, so there is no curve to show: λ alone decides where the volume ends. The Barrier "
                "sandbox shows what BAR's barrier would do.")
        return
    prune = figures.prune_rows(snap)
    if len(prune) == 0:
        st.caption("Pruning has not started: the curve at the starting budget b = (1 + τ)·V0, the volume at V0.")
        chart(figures.barrier(snap, uirevision=ns), "chart_barrier", snap)
        return
    pstep = snap.steps["step"][prune]
    lo, hi = int(pstep[0]), int(pstep[-1])
    key = f"barrier_step_{ns}"
    follow_key, hi_key = f"{key}__follow", f"{key}__hi"
    # A slider's identity includes its range: while the user looks back, freeze the range so the
    # slider is not re-created under their pointer every second as new steps arrive.
    if st.session_state.get(follow_key, True) or st.session_state.get(hi_key) is None:
        st.session_state[hi_key] = hi
    else:
        hi = min(hi, st.session_state[hi_key])
    follow_value(key, lo, hi)
    following = st.session_state.get(follow_key, True)
    if live is not None and following:
        # The point follows the training through the feed; a slider here would show the step of the
        # last page run, not the one drawn.
        st.button("Look back at an earlier step", key=f"{key}_lookback", on_click=look_back, args=(key,),
                  help="Stops following the training: a slider picks the step to show.")
    elif hi > lo:
        st.slider("Prune step (drag to look back; the point and the curve show that moment; the barrier "
                  "acts only while pruning)", lo, hi, key=key,
                  on_change=stop_following, args=(follow_key,))
        remember(key)
    if not following:
        st.button("Follow the latest step", key=f"{key}_followbtn", on_click=follow_again, args=(follow_key,))
    chosen = None if following else int(st.session_state.get(key, hi))
    # a step picked by the reader does not move: nothing to poll for
    live_panel("chart_barrier", snap, live if following else None, lambda sn: panel(sn, ns, chosen), choices=(chosen,))


def panel(snap: RunSnapshot, ns: str, chosen: int | None) -> tuple:
    """The barrier at prune step `chosen` (None: the latest one)."""
    p = figures.barrier_point(snap, chosen)
    fig = figures.barrier(snap, uirevision=ns, point=p)
    v0, f = p.v0, float(snap.steps["barrier_f"][p.row])
    metric = live_plot.metric
    scheduled = float(snap.steps["budget_b"][p.row]) if p.row is not None else p.b
    return fig, [metric("V / V0", f"{p.V / v0:.4f}"), metric("b / V0 (schedule)", f"{scheduled / v0:.4f}"),
                 metric("b / V0 (the barrier's, ahead)", f"{p.b / v0:.4f}"),
                 metric("a / V0", f"{p.a / v0:.4f}"), metric("f (as used, capped)", f"{f:.3g}")]


def render_lambda_evidence() -> None:
    """In the Barrier note: where the volume ends against λ, BAR next to L0, as bench/bench_methods.py
    measured it on the full Fashion-MNIST (the shipped copy of docs/results/lambda.csv)."""
    rows = results.shipped_rows("lambda")
    if not rows:
        return
    budgets = {r["budget"] for r in rows if r.get("method") == "bar" and r.get("budget")}
    fig = results.lambda_figure(rows, budgets.pop() if len(budgets) == 1 else None)
    chart(fig, "chart_lambda_evidence")
    st.caption("Measured by bench/bench_methods.py: resnet8 on the full Fashion-MNIST, every run with the same "
               "epochs. BAR lands at its budget over four decades of λ; L0 ends wherever λ sends it.")
