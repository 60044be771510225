"""The Compare page: two or more runs overlaid (V/V0, accuracy and loss against training progress), accuracy
against the pruning factor 1/B across them with the Pareto front and the dense teacher, the P(z>0)
histograms of two runs side by side, and a table of only the settings in which they differ.

Snapshots are read from the run folders (bar_core.history.snapshot_from_run) and kept per session
until a folder changes; the figures come from the pure builders of bar_core/comparison.py and
bar_core/figures.py.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from bar_app.text import literal
from bar_app.views.common import chart
from bar_core import comparison, figures
from bar_core.catalog import RunRow, run_path, scan_runs
from bar_core.history import RunSnapshot, snapshot_from_run
from bar_core.runs import RunFolderError

STAMP_FILES = ("metrics.csv", "epochs.csv", "gates.npz", "summary.json")
PICK = "compare_runs"


def _stamp(path: Path) -> tuple:
    return tuple((path / n).stat().st_mtime_ns if (path / n).exists() else 0 for n in STAMP_FILES)


def load_snapshot(path: Path) -> RunSnapshot:
    """A run's snapshot, re-read only when its files change (kept in this session)."""
    cache = st.session_state.setdefault("_compare_snaps", {})
    key = (str(path), _stamp(path))
    if key not in cache:
        if len(cache) > 32:
            cache.clear()
        cache[key] = snapshot_from_run(path)
    return cache[key]


def render_compare_page(manager) -> None:
    rows = [r for r in scan_runs(manager.runs_root) if r.state != "damaged"]
    by_name = {r.name: r for r in rows}
    asked = list(st.session_state.get(PICK, []))
    missing = [n for n in asked if n not in by_name]
    for name in missing:  # from a link or a run renamed since: say which, then drop it
        try:
            run_path(manager.runs_root, name)
            why = "it cannot be read"
        except RunFolderError as exc:
            why = str(exc)
        st.error(f"Not compared: {literal(repr(name))}: {literal(why)}")
    st.session_state[PICK] = [n for n in asked if n in by_name]
    st.multiselect("Runs to compare", list(by_name), key=PICK, placeholder="pick two or more runs",
                   help=f"Runs under {manager.runs_root}; pick them here or on the Runs page.")
    picked = st.session_state[PICK]
    if len(picked) < 2:
        st.info("Pick two or more runs to overlay them: their volume, accuracy and loss curves, accuracy "
                "against the pruning factor, their gates and the settings in which they differ.")
        return
    snaps, problems = {}, []
    for name in picked:
        try:
            snaps[name] = load_snapshot(Path(by_name[name].path))
        except (RunFolderError, OSError, ValueError, KeyError) as exc:
            problems.append(f"{name}: {exc}".splitlines()[0])
    for p in problems:
        st.error(f"Cannot read {literal(p)}")
    if len(snaps) < 2:
        return
    names, runs = list(snaps), list(snaps.values())
    chart(comparison.volume_overlay_figure(names, runs, uirevision="cmp-volume"), "cmp_volume")
    c1, c2 = st.columns(2)
    with c1:
        chart(comparison.accuracy_overlay_figure(names, runs, uirevision="cmp-acc"), "cmp_accuracy")
    with c2:
        chart(comparison.loss_overlay_figure(names, runs, uirevision="cmp-loss"), "cmp_loss")
    _pareto([by_name[n] for n in names])
    _gates(names, snaps)
    st.subheader("Settings that differ")
    diff = comparison.settings_diff({n: s.config for n, s in snaps.items()})
    if diff:
        frame = pd.DataFrame(diff).set_index("setting").astype(str)
        st.dataframe(frame, key="cmp_settings", width="stretch")
        st.download_button("Download (CSV)", frame.to_csv(), file_name="settings-diff.csv", mime="text/csv",
                           key="cmp_settings_csv")
    else:
        st.caption("These runs share every setting (different seeds, or the same run twice).")


def _pareto(rows: list[RunRow]) -> None:
    fig = figures.runs_pareto(rows)
    if fig is None:
        st.caption("Accuracy against pruning factor appears once runs have finished with a test accuracy.")
        return
    chart(fig, "cmp_pareto")


def _gates(names: list[str], snaps: dict[str, RunSnapshot]) -> None:
    st.subheader("Gates at the last epoch")
    pair = names[:2]
    if len(names) > 2:
        pair = st.multiselect("Side by side", names, default=names[:2], max_selections=2, key="cmp_gate_pair")
    cols = st.columns(max(len(pair), 1))
    for col, name in zip(cols, pair):
        with col:
            fig = comparison.gates_figure(name, snaps[name])
            if fig is None:
                st.caption(f"{literal(name)} has no epoch recorded yet.")
            else:
                chart(fig, f"cmp_gates_{pair.index(name)}")
