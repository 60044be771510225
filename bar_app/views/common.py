"""What the views share: the per-run memo, charts and live panels (with their feeds), and the sliders
that look back in time, which follow the latest value until the user moves them.

Figures come from bar_core/figures.py (a snapshot and the reader's choices in, a Figure out: the
builders the report and the exports use too); views that change only once per epoch are memoised
per (run, epochs seen, choices) so a live redraw rebuilds only what moved. Every chart has a fixed
key, and a download menu under it (bar_app/downloads.py: PNG, HTML, CSV, the run folder), whose
files are made only when clicked.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from bar_app import downloads, live_feed, live_plot
from bar_core.history import RunSnapshot
from bar_core.job import Job

MEMO_SIZE = 48


def run_namespace(snap: RunSnapshot | None) -> str:
    """A short name of the run shown: it prefixes the run's widget keys and memo entries."""
    src = "none" if snap is None else f"{snap.source}|{snap.run_dir}"
    return hashlib.md5(src.encode()).hexdigest()[:8]


def memo(key: tuple, build):
    """`build()`, kept in this session under `key` (at most MEMO_SIZE entries, then all forgotten)."""
    cache = st.session_state.setdefault("_fig_memo", {})
    if key not in cache:
        if len(cache) >= MEMO_SIZE:
            cache.clear()
        cache[key] = build()
    return cache[key]


def chart(fig, key: str, snap: RunSnapshot | None = None) -> None:
    """Draw `fig` under `key` with its download menu (the run folder too when `snap` has one)."""
    live_plot.chart(fig, key)
    downloads.chart_menu(key, fig, run_dir=snap.run_dir if snap is not None else None)


def no_data(what: str) -> None:
    st.info(f"{what}: shown here once a run is training or a past run is opened.")


@dataclass(frozen=True)
class Live:
    """A running job whose panels update through feeds (bar_app/live_feed.py), every `period` seconds."""
    job: Job
    period: float

    def version(self) -> tuple:
        return self.job.buffer.version, self.job.state


def live_panel(key: str, snap: RunSnapshot, live: Live | None, draw: Callable[[RunSnapshot], tuple],
               choices: tuple = ()) -> None:
    """A chart and its metric row, `draw(snapshot) -> (figure, metrics)`, drawn from `snap`; for a live
    job also published as a feed that draws them again from the job's newest snapshot (in the feed's
    worker thread: `draw` must not call Streamlit). `choices`: whatever of this session `draw` depends
    on besides the run; sessions with the same choices share one build per update."""
    fig, metrics = draw(snap)
    feed = None
    if live is None and f"_feed_{key}" in st.session_state:
        live_feed.FEEDS.withdraw(st.session_state[f"_feed_{key}"])
    if live is not None:
        def build() -> dict:
            t0 = time.perf_counter()
            f, m = draw(live.job.snapshot())
            out = live_plot.payload(f, metrics=m)
            out["caption"] = f"live update drawn in {1000 * (time.perf_counter() - t0):.0f} ms on the server"
            return out
        feed = publish_feed(key, live, build, share=(id(live.job), key, run_namespace(snap), choices))
    live_plot.panel(key, fig, metrics=metrics, feed=feed)
    # drawn once per page run, not per feed update; a live job's files are drawn from its newest snapshot at the click
    latest = (lambda: draw(live.job.snapshot())[0]) if live is not None else fig
    downloads.chart_menu(key, latest, run_dir=snap.run_dir)


def withdraw_feeds() -> None:
    """This session's page draws nothing live: the server forgets its feeds (and the job they hold)."""
    tokens = [v for k, v in st.session_state.items() if str(k).startswith("_feed_")]
    if tokens:
        live_feed.FEEDS.withdraw(*tokens)


def publish_feed(key: str, live: Live, build: Callable[[], dict], share=None) -> dict:
    """Publish this session's feed for `key` (one token per session and key, kept across reruns;
    `share`: see FeedRegistry.publish); returns what the panel polls: URL, token, the version the
    page is drawn at, and the period."""
    token = st.session_state.setdefault(f"_feed_{key}", live_feed.FEEDS.new_token())
    url, version = live_feed.FEEDS.publish(token, live.version, build, share=share)
    return {"url": url, "token": token, "version": version, "period": live.period}


def restore(key: str) -> None:
    """Streamlit forgets a widget's value when it is not drawn (another view was chosen); bring it back."""
    keep = f"_keep_{key}"
    if key not in st.session_state and keep in st.session_state:
        st.session_state[key] = st.session_state[keep]


def remember(*keys: str) -> None:
    """Keep the widgets' values for `restore` when their view is drawn again."""
    for key in keys:
        if key in st.session_state:
            st.session_state[f"_keep_{key}"] = st.session_state[key]


def follow_value(key: str, lo, hi, options=None) -> str:
    """Keep st.session_state[key] at the latest value while 'following', else clamp it into range;
    returns the key of the 'following' flag."""
    restore(key)
    follow_key = f"{key}__follow"
    follow = st.session_state.get(follow_key, True)
    cur = st.session_state.get(key)
    if options is not None:
        if follow or cur not in options:
            st.session_state[key] = options[-1]
    elif follow or cur is None or not (lo <= cur <= hi):
        st.session_state[key] = hi if follow or cur is None else min(max(cur, lo), hi)
    return follow_key


def stop_following(follow_key: str) -> None:
    st.session_state[follow_key] = False


def follow_again(follow_key: str) -> None:
    st.session_state[follow_key] = True


def look_back(key: str) -> None:
    """Stop following; the slider that appears starts at the latest step and its range is frozen there."""
    st.session_state[f"{key}__follow"] = False
    for k in (key, f"_keep_{key}", f"{key}__hi"):
        st.session_state.pop(k, None)


def epoch_choice(snap: RunSnapshot, ns: str, label: str, key_name: str) -> int:
    """A slider over the run's gate epochs that follows the latest one; returns the chosen index."""
    epochs = [e for e, _ in snap.gates]
    key = f"{key_name}_{ns}"
    follow_key = follow_value(key, None, None, options=epochs)
    if len(epochs) > 1:
        st.select_slider(label, options=epochs, key=key, on_change=stop_following, args=(follow_key,))
        remember(key)
        if not st.session_state.get(follow_key, True):
            st.button("Follow the latest epoch", key=f"{key}_followbtn", on_click=follow_again, args=(follow_key,))
    return epochs.index(st.session_state.get(key, epochs[-1]))
