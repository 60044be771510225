"""What the views share: the per-run memo, charts and live panels (with their feeds), and the sliders
that look back in time, which follow the latest value until the user moves them.

Figures come from bar_core/figures.py (a snapshot and the reader's choices in, a Figure out: the
builders the report and the exports use too); views that change only once per epoch are memoised
per (run, epochs seen, choices), for all sessions at once, so a live redraw rebuilds only what moved
and a classroom of viewers builds it once. Every chart has a fixed
key, and a download menu under it (bar_app/downloads.py: PNG, HTML, CSV, the run folder), whose
files are made only when clicked.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
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


class _Memo:
    """Figures of the views that change once per epoch, kept for every session of this server: the
    30 viewers of a classroom, rerunning at a new epoch, build each figure once (keys name the run,
    what it holds, and the reader's choices; values are shared, never changed)."""

    def __init__(self, size: int = MEMO_SIZE):
        self.size, self._lock = size, threading.Lock()
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._building: dict[tuple, threading.Lock] = {}
        self._json: dict[int, str] = {}  # id of a kept figure -> the JSON the chart component draws

    def get(self, key: tuple, build):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            lock = self._building.setdefault(key, threading.Lock())
        with lock:  # sessions asking at once wait for one build
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = build()
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.size:
                    self._json.pop(id(self._items.popitem(last=False)[1]), None)
                self._building.pop(key, None)
            return value

    def figure_json(self, fig) -> str | None:
        """The chart JSON of a figure kept here, encoded once for every session; None for others."""
        with self._lock:
            if id(fig) in self._json:
                return self._json[id(fig)]
            if not any(v is fig for v in self._items.values()):
                return None
        text = live_plot.figure_json(fig)
        with self._lock:
            if any(v is fig for v in self._items.values()):
                self._json[id(fig)] = text
        return text


MEMO = _Memo()


def memo(key: tuple, build):
    """`build()`, kept under `key` for every session of this server (the MEMO_SIZE latest keys)."""
    return MEMO.get(key, build)


def chart(fig, key: str, snap: RunSnapshot | None = None) -> None:
    """Draw `fig` under `key` with its download menu (the run folder too when `snap` has one)."""
    text = MEMO.figure_json(fig) if live_plot.available() else None
    if text is not None:
        live_plot.panel(key, built={"figure": text})
    else:
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
    if live is None and f"_feed_{key}" in st.session_state:
        live_feed.FEEDS.withdraw(st.session_state[f"_feed_{key}"])
    if live is None:
        fig, metrics = draw(snap)
        live_plot.panel(key, fig, metrics=metrics)
    else:
        def build() -> dict:
            t0 = time.perf_counter()
            f, m = draw(live.job.snapshot())
            out = live_plot.payload(f, metrics=m)
            out["caption"] = f"live update drawn in {1000 * (time.perf_counter() - t0):.0f} ms on the server"
            return out
        feed = publish_feed(key, live, build, share=(id(live.job), key, run_namespace(snap), choices))
        # the rerun draws what the polls get: one build per update for every session of the job
        now = live_feed.FEEDS.panel_now(feed["token"])
        if now is None:  # forgotten between publish and now (it cannot be polled either): draw it here
            fig, metrics = draw(snap)
            live_plot.panel(key, fig, metrics=metrics, feed=feed)
        else:
            live_plot.panel(key, built=now[1], feed={**feed, "version": now[0]})
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
