"""The Runs page: every run folder under the runs folder as a table (bar_core/catalog.py), with sort and
filter, and what to do with the picked runs: open one (replay), compare several, re-run one's settings,
rename one, delete some (after a confirmation), download the table as CSV.

Runs are picked in the table (click rows) or in the "Picked runs" box below it; both stay in step.
Names, paths and messages from run folders are shown as text, never as markdown.
"""
from __future__ import annotations

import json
from fractions import Fraction

import pandas as pd
import streamlit as st

from bar_app.classroom import VIEWER_NOTE, session_is_host
from bar_app.text import literal
from bar_core.catalog import STATES, RunRow, delete_run, rename_run, rows_frame, scan_runs
from bar_core.config import ConfigError, TrainConfig
from bar_core.job import JobManager
from bar_core.runs import RunFolderError

WATCH, RUNS, COMPARE = "Train & watch", "Runs", "Compare"
PAGES = (WATCH, RUNS, COMPARE)
SORTS = {"date": "date", "name": "name", "accuracy": "pruned_accuracy", "drop": "accuracy_drop",
         "V/V0": "volume_ratio", "budget B": "budget", "wall time": "wall_seconds"}
PICKED = "runs_picked"


def budget_text(b) -> str:
    """B as the fraction 1/N where it is one ("1/8": the pruning factor reads off it), else with enough
    digits ("0.3", "1e-09")."""
    if b is None or pd.isna(b):
        return ""
    f = Fraction(float(b)).limit_denominator(4096)
    if f.numerator == 1 and f.denominator > 1 and abs(float(f) - b) < 1e-9 * b:
        return f"1/{f.denominator}"
    return f"{b:.6g}"


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: a few columns in words, accuracies in percent points."""
    out = pd.DataFrame({
        "name": frame["name"], "state": frame["state"], "date": frame["date"], "model": frame["model"],
        "dataset": frame["dataset"], "method": frame["method"], "B": frame["budget"].map(budget_text),
        "1/B": frame["pruning_factor"], "λ": frame["lam"], "schedule": frame["schedule"], "seed": frame["seed"],
        "V/V0": frame["volume_ratio"], "teacher %": 100 * frame["teacher_accuracy"].astype(float),
        "pruned %": 100 * frame["pruned_accuracy"].astype(float), "drop (pts)": 100 * frame["accuracy_drop"].astype(float),
        "steps over budget": frame["steps_over_budget"], "wall (s)": frame["wall_seconds"], "health": frame["health"],
        "problem": frame["problem"]})
    return out.reset_index(drop=True)


COLUMN_CONFIG = {
    "1/B": st.column_config.NumberColumn(format="%.3g×"),
    "λ": st.column_config.NumberColumn(format="%.2e"),
    "V/V0": st.column_config.NumberColumn(format="%.4f"),
    "teacher %": st.column_config.NumberColumn(format="%.2f"),
    "pruned %": st.column_config.NumberColumn(format="%.2f"),
    "drop (pts)": st.column_config.NumberColumn(format="%.2f"),
    "wall (s)": st.column_config.NumberColumn(format="%.1f"),
    "seed": st.column_config.NumberColumn(format="%d"),
    "steps over budget": st.column_config.NumberColumn(format="%d"),
}


def go_to(page: str, **state) -> None:
    """Button callback: switch page (before the page picker is drawn) and set what it shows."""
    st.session_state.update(state)
    st.session_state["page"] = page


def _rows(manager: JobManager) -> list[RunRow]:
    return scan_runs(manager.runs_root)


def _filtered(frame: pd.DataFrame) -> pd.DataFrame:
    c1, c2, c3, c4 = st.columns([3, 3, 2, 1], vertical_alignment="bottom")
    text = c1.text_input("Filter by name, model, dataset or method", key="runs_filter",
                         placeholder="e.g. resnet8 or sweep1/")
    present = [s for s in STATES if s in set(frame["state"])]
    states = c2.multiselect("States", present, key="runs_states", placeholder="every state")
    sort = c3.selectbox("Sort by", list(SORTS), key="runs_sort")
    ascending = c4.toggle("Ascending", key="runs_ascending")
    if text:
        hay = frame[["name", "model", "dataset", "method"]].fillna("").astype(str).agg(" ".join, axis=1)
        frame = frame[hay.str.contains(text, case=False, regex=False)]
    if states:
        frame = frame[frame["state"].isin(states)]
    return frame.sort_values(SORTS[sort], ascending=ascending, na_position="last", kind="stable")


def _table_picked(names: list[str]) -> None:
    """on_select callback: rows clicked in the table become the picked runs."""
    event = st.session_state.get("runs_table")
    rows = event.selection.rows if event is not None else []
    st.session_state[PICKED] = [names[i] for i in rows if i < len(names)]


def render_runs_page(manager: JobManager) -> None:
    rows = _rows(manager)
    root = manager.runs_root
    st.caption(f"{len(rows)} run{'s' * (len(rows) != 1)} under {literal(root)} (the app's and the CLI's; runs inside "
               "sweep folders as sweep/run).")
    message = st.session_state.pop("runs_message", None)
    if message:
        (st.success if message[0] == "ok" else st.error)(message[1])
    if not rows:
        st.info("No runs yet. Start one from the set-up in the sidebar, or with `bar train` / `bar sweep`.")
        return
    frame = _filtered(rows_frame(rows))
    shown = display_frame(frame)
    names = shown["name"].tolist()
    st.dataframe(shown, key="runs_table", on_select=lambda: _table_picked(names), selection_mode="multi-row",
                 hide_index=True, column_config=COLUMN_CONFIG, width="stretch")
    all_names = [r.name for r in rows]
    st.session_state[PICKED] = [n for n in st.session_state.get(PICKED, []) if n in all_names]
    picked = st.multiselect("Picked runs", all_names, key=PICKED, placeholder="click rows above, or pick here")
    by_name = {r.name: r for r in rows}
    _actions(manager, [by_name[n] for n in picked])
    st.download_button("Download this table (CSV)", frame.to_csv(index=False), file_name="runs.csv",
                       mime="text/csv", key="runs_csv")


def _actions(manager: JobManager, picked: list[RunRow]) -> None:
    one = len(picked) == 1
    c = st.columns(5)
    c[0].button("Open (replay)", key="runs_open", disabled=not one, width="stretch",
                on_click=lambda: go_to(WATCH, show="__path__", run_path=picked[0].path),
                help="Show this run's views on the Train & watch page.")
    c[1].button("Compare", key="runs_compare", disabled=len(picked) < 2, width="stretch",
                on_click=lambda: go_to(COMPARE, compare_runs=[r.name for r in picked]),
                help="Overlay two or more runs on the Compare page.")
    if not session_is_host():  # classroom viewer: look, compare, no changes
        c[2].caption(VIEWER_NOTE)
        return
    c[2].button("Re-run with these settings", key="runs_rerun", disabled=not one, width="stretch",
                on_click=lambda: load_into_form(picked[0]),
                help="Load this run's config into the set-up form (sidebar); change anything, then Start.")
    c[3].button("Rename ...", key="runs_rename_open", disabled=not one, width="stretch",
                on_click=lambda: st.session_state.update(runs_pending=("rename", [picked[0].name])))
    c[4].button("Delete ...", key="runs_delete_open", disabled=not picked, width="stretch",
                on_click=lambda: st.session_state.update(runs_pending=("delete", [r.name for r in picked])))
    pending = st.session_state.get("runs_pending")
    if not pending:
        return
    kind, names = pending
    if kind == "rename":
        st.text_input(f"New name for {names[0]}", key="runs_new_name",
                      help="1-100 letters, digits, '.', '_' or '-'.")
        a, b = st.columns(2)
        a.button("Rename", key="runs_rename", type="primary", on_click=_rename, args=(manager, names[0]))
        b.button("Cancel", key="runs_cancel", on_click=lambda: st.session_state.pop("runs_pending", None))
    else:
        st.warning(f"Delete {len(names)} run folder{'s' * (len(names) != 1)} for good: " + ", ".join(literal(n) for n in names) + "?")
        a, b = st.columns(2)
        a.button("Yes, delete", key="runs_delete", type="primary", on_click=_delete, args=(manager, names))
        b.button("Cancel", key="runs_cancel", on_click=lambda: st.session_state.pop("runs_pending", None))


def _rename(manager: JobManager, name: str) -> None:
    if not session_is_host():  # a viewer's forged button message must not rename
        return
    st.session_state.pop("runs_pending", None)
    new = st.session_state.get("runs_new_name", "").strip()
    try:
        new_name = rename_run(manager.runs_root, name, new)
    except (RunFolderError, OSError) as exc:
        st.session_state["runs_message"] = ("error", f"Not renamed: {exc}")
        return
    st.session_state[PICKED] = [new_name]
    st.session_state["runs_message"] = ("ok", f"Renamed {name} to {new_name}.")


def _delete(manager: JobManager, names: list[str]) -> None:
    if not session_is_host():  # a viewer's forged button message must not delete
        return
    st.session_state.pop("runs_pending", None)
    done, failed = [], []
    for name in names:
        try:
            delete_run(manager.runs_root, name)
            done.append(name)
        except (RunFolderError, OSError) as exc:
            failed.append(str(exc))
    st.session_state[PICKED] = []
    st.session_state["runs_message"] = (("error", "Not deleted: " + "; ".join(failed)) if failed
                                        else ("ok", f"Deleted {', '.join(done)}."))


def config_of(row: RunRow) -> TrainConfig:
    """A run's settings as a TrainConfig; ConfigError naming the key when its config.json cannot be one."""
    from pathlib import Path

    path = Path(row.path) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{row.name}/config.json cannot be read ({exc})") from None
    return TrainConfig.from_file_dict(data, where=f"{row.name}/config.json")


def load_into_form(row: RunRow) -> None:
    """Button callback: the run's settings into the set-up form, and the Train & watch page."""
    from bar_app.views.setup import load_config

    try:
        cfg = config_of(row)
    except ConfigError as exc:
        st.session_state["runs_message"] = ("error", f"Not loaded: {exc}")
        return
    load_config(cfg, f"Loaded the settings of {row.name}: change anything, then Start.")
    st.session_state["page"] = WATCH
