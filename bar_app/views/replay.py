"""Replay: a finished run played again as an animation (bar_core/animation.py), the volume, the barrier
and the channels kept per layer together, at a chosen speed. plotly.js plays it in the browser."""
from __future__ import annotations

import streamlit as st

from bar_app.views.common import Live, chart, memo, no_data, remember, restore
from bar_core.animation import PLAYBACK_SECONDS, replay_figure
from bar_core.history import RunSnapshot

ACTIVE = ("starting", "running", "paused", "stopping")
REAL_TIME = "as it ran"


def playback_label(seconds, run_seconds: float | None) -> str:
    """'15 s (3.3× faster)' for a choice of playback length, against the run's training time."""
    if seconds == REAL_TIME:
        return f"as it ran ({run_seconds:.0f} s)" if run_seconds else "as it ran"
    if not run_seconds:
        return f"{seconds} s"
    factor = run_seconds / float(seconds)
    return f"{seconds} s ({factor:.2g}× faster)" if factor >= 1 else f"{seconds} s ({1 / factor:.2g}× slower)"


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is not None and snap.source == "live" and snap.state in ACTIVE:
        st.info("The replay plays a run that has ended: it is ready when this one stops or finishes "
                "(or pick a past run under Show).")
        return
    if snap is None or not snap.has_steps or not snap.v0:
        no_data("A finished run played again: the volume, the barrier and the kept channels together")
        return
    times = snap.steps.get("t")
    run_seconds = float(times[-1]) if times is not None and len(times) and times[-1] > 0 else None
    key = "replay_seconds"
    restore(key)
    options = [*PLAYBACK_SECONDS, *([REAL_TIME] if run_seconds else [])]
    if st.session_state.get(key) not in options:
        st.session_state[key] = 15
    st.segmented_control("Play it in", options, key=key, required=True,
                         format_func=lambda v: playback_label(v, run_seconds))
    remember(key)
    choice = st.session_state[key]
    seconds = run_seconds if choice == REAL_TIME else float(choice)
    fig = memo(("replay", ns, snap.version, seconds), lambda: replay_figure(snap, seconds, uirevision=ns))
    chart(fig, "chart_replay", snap)
    meta = fig.layout.meta or {}
    steps_per_frame = snap.n_steps / max(int(meta.get("frames", 1)), 1)
    st.caption(f"▶ Play runs from the slider's position and ❚❚ Pause holds it; drag the slider or click on it to "
               f"step, one frame at a time ({meta.get('frames')} frames, about {steps_per_frame:.0f} training "
               f"steps each, {meta.get('frame_ms')} ms a frame). The kept-channel bars move at each epoch's end: "
               "the gates are saved once an epoch.")
    deaths = meta.get("deaths") or {}
    if deaths:
        by_step = sorted(deaths.items(), key=lambda kv: kv[1])
        st.caption("Layers left with no channel: " + "; ".join(f"{name} from step {step}" for name, step in by_step)
                   + ". Their pruned bar turns red from that frame on.")
