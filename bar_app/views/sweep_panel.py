"""A sweep job's panel on the Train & watch page: which run trains now, and the accuracy against the
pruning factor of the runs finished so far (the Pareto chart fills in as the sweep goes)."""
from __future__ import annotations

import streamlit as st

from bar_app.runs_page import COLUMN_CONFIG, budget_text, display_frame
from bar_app.text import literal
from bar_app.views.common import chart
from bar_core.catalog import rows_frame
from bar_core.figures import runs_pareto


def render_sweep_panel(job) -> None:
    """`job`: a bar_core.job.SweepJob (the current job, live)."""
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
