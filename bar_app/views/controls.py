"""Job controls (Pause, Resume, Stop), the status line with its progress bar, and the run picker."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import streamlit as st

from bar_app import live_plot
from bar_app.classroom import VIEWER_NOTE, session_is_host
from bar_app.state import host_only, start_job, start_sweep
from bar_app.text import literal
from bar_app.views.common import Live, publish_feed
from bar_app.views.setup import start_quick_demo
from bar_core.catalog import past_speed
from bar_core.health import health_findings
from bar_core.history import RunSnapshot
from bar_core.job import ACTIVE_STATES, JobManager
from bar_core.losses import METHOD_TITLES
from bar_core.runs import list_runs

STATE_ICONS = {"starting": "…", "running": "▶", "paused": "‖", "stopping": "■", "done": "✓", "stopped": "■",
               "error": "✗", "unfinished": "!"}  # plain symbols: they render without an emoji font


def render_controls(manager: JobManager, replaying: bool = False) -> None:
    """Pause / Resume / Stop for the current job (buttons change on a full rerun). While the page
    replays another run, one line names the current job instead: its buttons would not act on the
    run shown."""
    job = manager.job
    if job is not None and replaying:
        st.caption(f"{STATE_ICONS.get(job.state, '')} Current job {literal(job.name)}: {job.state}. Its controls are "
                   "with it: pick \"current job\" under Show.")
        return
    if not session_is_host():  # classroom viewer: the state, no buttons
        if job is not None:
            st.markdown(f"**{STATE_ICONS.get(job.state, '')} {job.state}** — current job  \n`{job.name}`")
        st.caption(VIEWER_NOTE)
        return
    if job is None:
        if not list_runs(manager.runs_root):  # the very first open: one obvious way to begin
            with st.container(border=True):
                st.markdown("**New here?** Prune a ResNet-8 on Fashion-MNIST to a quarter of its volume and "
                            "watch it happen: about a minute on a laptop CPU, offline.")
                st.button("▶ Start the quick demo", key="start_quick_demo", type="primary",
                          on_click=start_quick_demo)
                st.caption("Or change the set-up in the sidebar and press **Start** there.")
            msg = st.session_state.get("setup_message")
            if msg:
                st.error(msg)
        else:
            st.caption("No job has run on this server yet. Pick a preset in the sidebar and press **Start**, "
                       "or open a past run below (the Runs page lists them all).")
        return
    state = job.state
    c0, c1, c2, c3, c4 = st.columns([4, 1, 1, 1, 1.3], vertical_alignment="bottom")
    c0.markdown(f"**{STATE_ICONS.get(state, '')} {state}** — current job  \n`{job.name}`")
    c1.button("Pause", key="pause", on_click=host_only(job.pause), disabled=state not in ("running", "starting"),
              width="stretch")
    if state == "stopped" and getattr(job, "kind", "run") == "sweep":  # the whole sweep goes on
        c2.button("Resume", key="resume", on_click=continue_sweep, args=(job.name,), width="stretch",
                  help="Continue the sweep: the stopped run from its checkpoint, then the runs not trained yet.")
    elif state == "stopped" and job.run_dir is not None:  # a stopped job continues from its checkpoint
        c2.button("Resume", key="resume", on_click=continue_run, args=(str(job.run_dir),), width="stretch",
                  help="Continue the stopped run from its checkpoint, in the same folder.")
    else:
        c2.button("Resume", key="resume", on_click=host_only(job.resume), disabled=state != "paused", width="stretch")
    c3.button("Stop", key="stop", on_click=host_only(job.stop), disabled=state not in ("running", "starting", "paused"),
              width="stretch", help="Stops after the current step and saves a checkpoint: **Resume** (or **Continue this run** "
                   "on the run later, or the CLI's --resume) goes on from there.")
    if st.session_state.get("continue_message") and st.session_state.get("show") == "live":
        st.error(st.session_state["continue_message"])
    c4.selectbox("Live refresh", REFRESH_CHOICES, key="refresh_s", format_func=lambda s: f"every {s:g} s",
                 help="How often the live views redraw while training. On a 2-core machine each redraw (server "
                      "and browser) takes a little from training: 2 s or 5 s trains faster.")


REFRESH_CHOICES = [1.0, 2.0, 5.0]


def continue_run(run_dir: str) -> None:
    """Button callback: continue a stopped run from its checkpoint and show it live."""
    start_job("continue_message", "continued", "Loading the run's checkpoint ...", config=None, continue_run=run_dir)


def continue_sweep(name: str) -> None:
    """Button callback: continue a stopped sweep as its sweep.json asks."""
    start_sweep("continue_message", "continued", "Loading the sweep ...", config=None, name=name)


def refresh_seconds() -> float:
    """The live views' redraw interval chosen on this page (default: about once a second)."""
    return float(st.session_state.get("refresh_s", REFRESH_CHOICES[0]))


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(snap: RunSnapshot) -> str:
    p = snap.progress
    total_epochs = sum(int(ph.get("epochs", 0)) for ph in snap.layout.get("phases", []))
    phase = p.get("phase") or "preparing"
    epoch = p.get("epoch")
    parts = [f"{STATE_ICONS.get(snap.state, '')} {snap.state}", f"phase: {phase}"]
    if epoch is not None:
        parts.append(f"epoch {epoch}/{total_epochs}")
    step, total = p.get("step", 0), p.get("total_steps", 0)
    if total and step > total:  # the extra prune steps taken at b = B·V0 are beyond the plan
        parts.append(f"step {step} ({total} planned + {step - total} extra prune steps)")
    else:
        parts.append(f"step {step}/{total}")
    if snap.state in ("running", "starting"):
        parts.append(f"ETA {_fmt_duration(p.get('eta_seconds'))}")
    return " · ".join(parts)


def status_progress(snap: RunSnapshot) -> dict:
    return {"fraction": float(snap.progress.get("fraction") or 0.0), "text": progress_text(snap)}


SLOW = 0.4  # a live run at under 40 % of this machine's earlier speed is told why, and what helps
_BASELINES: dict[tuple, tuple[float, str] | None] = {}  # per job: what this machine did before


def _baseline(job) -> tuple[float, str] | None:
    key = (id(job), job.name)
    if key not in _BASELINES:
        root, config = getattr(job, "runs_root", None), getattr(job, "config", None)
        _BASELINES[key] = None if root is None or config is None else past_speed(
            root, config.to_dict(), exclude=getattr(job, "run_dir", None))
    return _BASELINES[key]


def contention(snap: RunSnapshot, job) -> str | None:
    """A hint when the live run trains far slower than the same set-up did here before."""
    ips = snap.steps.get("images_per_s")
    if job is None or ips is None or len(ips) < 30 or snap.state != "running":
        return None
    base = _baseline(job)
    now = float(np.nanmedian(ips[-30:]))
    if base is None or not now < SLOW * base[0]:
        return None
    return (f"Training runs at {now:,.0f} images/s, far below the {base[0]:,.0f} this machine did with the same "
            f"set-up before ({base[1]}): another program is probably using the CPU. Closing it gives the "
            f"training its cores back; a slower Live refresh (every 5 s) leaves it a little more.")


def status_watch(snap: RunSnapshot, state: str, epochs: bool, phase: bool, slow: bool = False) -> dict:
    """What, when it changes, needs the live fragment to run again rather than a feed update: the job
    ended (the page's buttons change), a warning, an error or a pause arrived, the first step came
    (views replace their placeholder), and, for the views that need them, a new epoch (its gates) or a
    new phase (the barrier view starts its step picker with pruning). Each rerun re-renders the whole
    page in the browser, so a view that draws these from its feed does not ask for them."""
    return {"ended": state not in ACTIVE_STATES, "events": len(snap.events), "has_steps": snap.has_steps,
            "epochs": len(snap.gates) if epochs else None, "phase": snap.progress.get("phase") if phase else None,
            "slow": slow}


def render_status(snap: RunSnapshot, live: Live | None = None, watch_epochs: bool = False,
                  watch_phase: bool = False, job=None) -> None:
    """Progress bar (phase, epoch, ETA), the outcome when finished, warnings and errors. With `live`,
    the bar updates through a feed and the fragment reruns when `status_watch` changes."""
    feed = watch = None
    job = live.job if live is not None else job  # the job shown live, for the contention hint
    hint = contention(snap, job) if job is not None else None
    if live is not None:
        job = live.job

        def build() -> dict:
            s = job.snapshot()
            return {**live_plot.payload(progress=status_progress(s)),
                    "watch": status_watch(s, job.state, watch_epochs, watch_phase, contention(s, job) is not None)}

        feed = publish_feed("live_status", live, build, share=(id(job), "live_status", watch_epochs, watch_phase))
        watch = status_watch(snap, job.state, watch_epochs, watch_phase, hint is not None)
    live_plot.panel("live_status", progress=status_progress(snap), feed=feed, watch=watch)
    if hint:
        st.warning(hint, icon="🐢")
    if snap.error:  # messages from the run's files are shown as text, never as markdown
        where = f" The run folder is kept: {literal(snap.run_dir)}." if snap.run_dir else ""
        st.error(f"Training error: {literal(snap.error)}.{where}")
    s = snap.summary
    warnings = snap.warnings
    if s and s.get("budget_met") and s.get("extra_prune_steps"):  # that warning has been answered since
        settled = [w for w in warnings if "when the schedule ends" in w]
        warnings = [w for w in warnings if w not in settled]
        if settled:
            st.info(f"{literal(settled[-1].split(';')[0])}; {s['extra_prune_steps']} extra prune steps at b = B·V0 "
                    "then brought V under the budget.")
    for msg in snap.notes[-2:]:
        st.info(literal(msg))
    for msg in warnings[-3:]:
        st.warning(literal(msg))
    if s:
        health = run_health(snap)
        for finding in health:
            st.warning(f"Not a healthy result: {literal(finding)}.", icon="⚠️")
        c = st.columns(5)
        ratio, budget = s.get("volume_ratio"), s.get("budget")
        c[0].metric("V / V0", "—" if ratio is None else f"{ratio:.3f}",
                    help=None if budget is None else f"budget B = {budget:g}")
        budgetless = s.get("budget_met") is None  # l0 and magnitude: the factor is what they reached
        verdict = ("none" if budgetless else "NOT met" if not s["budget_met"]
                   else "under it, not healthy" if health else "met")
        method = f"{METHOD_TITLES.get(s.get('method'), 'L0')}: " if budgetless else ""
        c[1].metric("Budget", verdict, f"{method}{s.get('pruning_factor') or 0:.3g}× pruning", delta_color="off",
                    delta_arrow="off",
                    help="Met: V ≤ B·V0 at the end and the run is healthy (accuracy above chance, V not far "
                         "below the budget).")
        acc, teacher = s.get("pruned_accuracy"), s.get("teacher_accuracy")
        c[2].metric("Accuracy", "—" if acc is None else f"{100 * acc:.2f}%",
                    None if acc is None or teacher is None else f"{100 * (acc - teacher):+.2f} pts vs teacher")
        c[3].metric("Channels kept", f"{s.get('kept_channels')}/{s.get('total_channels')}")
        c[4].metric("Wall time", _fmt_duration(s.get("wall_seconds")),
                    f"{s.get('steps_over_budget') or 0} steps over budget", delta_color="off", delta_arrow="off")


def run_health(snap: RunSnapshot) -> list[str]:
    """summary.json's health findings; computed here for a run folder written before it had them."""
    s = snap.summary or {}
    if "health" in s:
        return list(s["health"] or [])
    return health_findings(s, (snap.layout.get("data") or {}).get("num_classes"))


def render_source_picker(manager: JobManager) -> str:
    """What the views show: 'live' (the current job) or a run folder path. Stored in session_state['show']."""
    runs = list_runs(manager.runs_root)
    job = manager.job
    live_dir = str(job.run_dir) if job is not None and job.run_dir is not None else None
    options = (["live"] if job is not None else []) + [str(p) for p in runs if str(p) != live_dir]
    if job is not None and st.session_state.get("_show_job") != id(job):
        # a job this page has not shown yet (started here, in another tab, or found on reload): show it
        st.session_state["_show_job"] = id(job)
        st.session_state["show"] = "live"
    if "show" not in st.session_state or st.session_state["show"] not in options + ["__path__"]:
        st.session_state["show"] = options[0] if options else "none"

    def label(o: str) -> str:
        if o == "live":
            return f"current job: {job.name}"
        if o == "__path__":
            return "a run folder by path ..."
        return f"past run: {Path(o).name}"

    if not options:  # nothing to show yet: no empty path box on a first open, just the way to one
        with st.expander("Open a run folder by path"):
            path = st.text_input("Run folder", key="run_path", placeholder="runs/demo",
                                 help="A run folder written by the CLI or another app, anywhere on this machine.")
        return path.strip() or "none"
    choices = options + ["__path__"]
    if st.session_state["show"] == "none":
        st.session_state["show"] = options[0]
    st.selectbox("Show", choices, key="show", format_func=label,
                 help=f"Runs under {manager.runs_root}; runs written by the CLI elsewhere open by path.")
    if st.session_state["show"] == "__path__":
        path = st.text_input("Run folder", key="run_path", placeholder="runs/demo")
        return path.strip() or "none"
    return st.session_state["show"]
