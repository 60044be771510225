"""A sweep job's panel on the Train & watch page: which run trains now, and the accuracy against the
pruning factor of the runs finished so far (the Pareto chart fills in as the sweep goes). A series
(the lesson "Why the barrier?") shows its runs' volume curves side by side instead."""
from __future__ import annotations

import streamlit as st

from bar_app.runs_page import COLUMN_CONFIG, budget_text, display_frame
from bar_app.text import literal
from bar_app.views.common import chart
from bar_core.catalog import rows_frame
from bar_core.comparison import volume_overlay_figure
from bar_core.figures import runs_pareto
from bar_core.history import snapshot_from_run
from bar_core.losses import METHOD_TITLES
from bar_core.runs import RunFolderError


def render_sweep_panel(job) -> None:
    """`job`: a bar_core.job.SweepJob (the current job, live)."""
    if job.kind == "series":
        render_series_panel(job)
        return
    p = job.progress
    total = len(job.plan.runs)
    if p is None:
        st.caption(f"Sweep {literal(job.name)}: preparing the first of {total} runs ...")
    else:
        st.caption(f"Sweep {literal(job.name)}: run {p.index + 1} of {p.total}, {literal(p.name)} (B = {budget_text(p.budget)}, "
                   f"seed {p.seed}), {p.state}. The views below show this run.")
    rows = job.finished_rows()
    with st.expander(f"Sweep so far: {len(rows)} of {total} runs ended", expanded=bool(rows)):
        fig = runs_pareto(rows, uirevision=f"sweep-{job.name}")
        if fig is not None:
            chart(fig, "sweep_pareto")
        else:
            st.caption("Accuracy against the pruning factor appears here once the first run has finished.")
        if rows:
            st.dataframe(display_frame(rows_frame(rows)), hide_index=True, column_config=COLUMN_CONFIG,
                         width="stretch")


def render_series_panel(job) -> None:
    """The runs of a series so far, their V/V0 curves in one chart (the current run live)."""
    p = job.progress
    runs = job.plan.runs
    methods = " then ".join(METHOD_TITLES.get(r.config.method, r.config.method) for r in runs)
    if p is None:
        st.caption(f"{literal(job.name)} ({methods}): preparing the first of {len(runs)} runs ...")
    else:
        st.caption(f"{literal(job.name)} ({methods}): run {p.index + 1} of {p.total}, {literal(p.name)}, {p.state}. "
                   "The views below show this run; the chart compares them.")
    names, snaps = [], []
    for r in runs[:(p.index + 1) if p is not None else 0]:
        current = p is not None and r.index == p.index and p.run_dir is not None
        try:
            snap = job.snapshot() if current else snapshot_from_run(job.plan.run_dir(r))
        except (OSError, ValueError, RunFolderError):
            continue
        if snap.has_steps:
            names.append(f"{METHOD_TITLES.get(r.config.method, r.config.method)} ({r.name})")
            snaps.append(snap)
    with st.expander(f"{job.name}: the volume curves side by side", expanded=True):
        if snaps:
            chart(volume_overlay_figure(names, snaps, uirevision=f"series-{job.name}"), "series_volume")
        else:
            st.caption("The volume curves appear here once the first run trains.")
