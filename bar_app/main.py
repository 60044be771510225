"""BAR Explorer: the page. Run with `python -m bar_app` (or `make run`), which serves it through bar_app/server.py.

Pages: Train & watch (below), Runs (bar_app/runs_page.py: the runs table) and Compare
(bar_app/compare_page.py); the page's state lives in its URL (bar_app/url_state.py).

Layout: the set-up form in the sidebar; job controls and the run picker at the top; then a picker of
the views (bar_app/views/registry.py) and the chosen one's teaching note. Below them a fragment holds what moves while the shown
job trains: progress, outcome and the view. Served with feeds (bar_app/live_feed.py), its progress bar
and step-by-step charts fetch their updates about once a second without rerunning Streamlit, and the
fragment itself reruns only when something else changed; otherwise (AppTest, a bare `streamlit run
bar_app/main.py`) the fragment redraws every refresh. Nothing moves while idle. The training thread never
touches Streamlit; this script and the feeds read copies from the job's live buffer or replay a run
folder.
"""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from bar_app import live_feed, live_plot
from bar_app.classroom import is_host
from bar_app.compare_page import render_compare_page
from bar_app.runs_page import PAGES, RUNS, WATCH, render_runs_page
from bar_app.state import get_manager
from bar_app.text import literal
from bar_app.url_state import restore_from_url, show_ignored, write_to_url
from bar_app.views import explain
from bar_app.views.common import Live, withdraw_feeds
from bar_app.views.controls import continue_run, refresh_seconds, render_controls, render_source_picker, render_status
from bar_app.views.registry import View, render_explanation, render_view, render_view_picker
from bar_app.views.setup import render_run_settings, render_setup
from bar_app.views.sweep_panel import render_sweep_panel
from bar_core.catalog import running_process
from bar_core.history import RunSnapshot, snapshot_from_run
from bar_core.runs import RunFolderError, holds_run

st.set_page_config(page_title="BAR Explorer", page_icon="✂️", layout="wide")
# Streamlit animates every progress-bar change for 0.5 s, i.e. the browser repaints the bar for half of
# every live second: close to a third of Chromium's CPU while training (bench/bench_app.py), all of it
# taken from the training on a 2-core laptop. The bar jumps instead.
st.html("<style>[data-testid='stProgress'] * { transition: none !important; }</style>")
manager = get_manager()
host = is_host(st.session_state, st.query_params)  # before the URL is rewritten without the token
restore_from_url(manager.runs_root)  # a shared link's set-up and view, once per session

with st.sidebar:
    render_setup(manager)

st.title("✂️ BAR Explorer")
st.caption("Budget-Aware Regularization (Lemaire et al., CVPR 2019): structured pruning to a volume budget.")
if st.session_state.get("page") not in PAGES:
    st.session_state["page"] = WATCH
st.segmented_control("Page", PAGES, key="page", required=True, label_visibility="collapsed")
show_ignored()
if st.session_state["page"] != WATCH:
    (render_runs_page if st.session_state["page"] == RUNS else render_compare_page)(manager)
    write_to_url(manager.runs_root)
    st.stop()

with st.expander("What is BAR? (start here)"):
    st.markdown(explain.INTRO)

controls = st.container()  # drawn above the picker, once it is known whether the page shows the job
source = render_source_picker(manager)
with controls:
    render_controls(manager, replaying=source not in ("live", "none", ""))
job = manager.job
live = source == "live" and job is not None
running = live and job.active


def _replay(path: str) -> tuple[RunSnapshot | None, str | None]:
    """A past run's snapshot, re-read only when its files change (memoised per session)."""
    p = Path(path).expanduser()
    if not holds_run(p):
        return None, f"{path!r} is not a run folder (it needs config.json, metrics.csv, ...)"
    stamp = tuple((p / n).stat().st_mtime_ns if (p / n).exists() else 0
                  for n in ("metrics.csv", "epochs.csv", "gates.npz", "summary.json"))
    cache = st.session_state.get("_replay")
    if cache and cache[0] == (str(p), stamp):
        return cache[1], None
    try:
        snap = snapshot_from_run(p)
    except (RunFolderError, OSError, ValueError, KeyError) as exc:
        return None, f"cannot read {path!r}: {exc}"
    st.session_state["_replay"] = ((str(p), stamp), snap)
    return snap, None


def _continuable(snap: RunSnapshot) -> bool:
    """A stopped run, or one that ended in an error (a full disk, say) or was killed, with a checkpoint
    to go on from and no process writing it."""
    if snap.state not in ("stopped", "error", "unfinished") or not snap.run_dir:
        return False
    return (Path(snap.run_dir) / "checkpoint.pt").is_file() and not running_process(Path(snap.run_dir))


def _replay_header(snap: RunSnapshot) -> None:
    c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="center")
    c1.caption(f"Replaying {literal(snap.run_dir)}")
    c2.button("Reload from disk", key="reload_run", width="stretch",
              help="Re-read the folder (a run the CLI is still writing grows).")
    if host and _continuable(snap):
        c3.button("Continue this run", key="continue_run", width="stretch", disabled=manager.busy,
                  on_click=continue_run, args=(snap.run_dir,),
                  help="Train on from its last checkpoint, in the same folder and with the same settings."
                  + (" (Stop the current job first.)" if manager.busy else ""))
    if st.session_state.get("continue_message"):
        st.error(st.session_state["continue_message"])
    if snap.problems:  # damaged files: what is left out, as text; every view draws what remains
        st.warning("This run folder is damaged, so some of it is not shown: "
                   + "; ".join(literal(p) for p in snap.problems) + ".", icon="🩹")
    render_run_settings(snap.config, f"replay_{Path(snap.run_dir or '').name}")


def _shown_snapshot() -> tuple[RunSnapshot | None, str | None]:
    if live:
        return job.snapshot(), None
    if source in ("none", ""):
        return None, None
    return _replay(source)


if not live:  # a replay does not refresh by itself: its header is drawn once, above the views
    replayed, problem = _shown_snapshot()
    if replayed is not None and not problem:
        _replay_header(replayed)


# Only what moves is inside the fragment: the view picker and the teaching note are drawn once per
# page run. Each run of the fragment re-renders the whole page in the browser, and on a 2-core laptop
# the browser's time is taken from the training. So when this server answers feeds (bar_app/server.py),
# the progress bar and the charts that move at every step fetch their own updates once a `refresh`,
# and the fragment runs again only when something else changed (their `watch`: the job ended, a new
# epoch or phase, a warning), or every FEED_SAFETY_RERUN seconds (anything else; each of these
# reruns costs the browser several times what a feed update does). Without feeds the fragment redraws
# everything every `refresh` seconds.
FEED_SAFETY_RERUN = 60.0
feeds = running and live_feed.serving() and live_plot.available()


@st.fragment(run_every=(FEED_SAFETY_RERUN if feeds else refresh_seconds()) if running else None)
def live_section(view: View) -> None:
    t0 = time.perf_counter()
    snap, problem = _shown_snapshot()
    live_source = Live(job, refresh_seconds()) if feeds and job.active else None
    if live_source is None:
        withdraw_feeds()
    if problem:  # here, not above: a widget of the view reruns only this fragment
        st.error(problem)
    elif snap is not None:
        render_status(snap, live_source, watch_epochs=not view.every_step, watch_phase=not view.feeds_only,
                      job=job if live else None)
    if live and getattr(job, "kind", "run") in ("sweep", "series"):
        render_sweep_panel(job)
    render_view(view, None if problem else snap, live_source)
    ms = 1000 * (time.perf_counter() - t0)
    if live_source is None or not view.every_step:  # else the live panel says how long its updates take
        st.caption(f"views drawn in {ms:.0f} ms", help="server-side time of this redraw")
    st.session_state["last_redraw_ms"] = ms
    # The buttons outside this fragment only change on a full rerun: do one when the job ends.
    if running and not job.active:
        st.rerun(scope="app")


view = render_view_picker()
render_explanation(view)
live_section(view)


def _job_key(j) -> tuple:
    return (id(j), j.active if j is not None else None)


st.session_state["_seen_job"] = _job_key(job)


@st.fragment(run_every=2.0 if not running else None)
def watch_other_tabs() -> None:
    """While idle, notice a job started or ended from another tab and redraw the page once."""
    if st.session_state.get("_seen_job") != _job_key(manager.job):
        st.rerun(scope="app")


watch_other_tabs()
write_to_url(manager.runs_root)
