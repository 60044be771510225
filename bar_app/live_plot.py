"""Live panels that stay mounted while they update: a small Streamlit component around `Plotly.react`.

`st.plotly_chart` gives a changed figure a new element id, so the browser throws the chart away and
builds a new one at every live refresh: about 0.1 of a core of Chromium's CPU at a 1 s refresh,
taken from the training on a 2-core laptop, and the reader's zoom, pan and hover are lost every
second. This component keeps one Plotly div per chart key and hands each new figure to
`Plotly.react`, which redraws in place and keeps the view the reader chose (the figures set
`uirevision`). Its code and style are bar_app/assets/live_plot.js and live_plot.css.

A panel is what moves in one place of the page: an optional progress bar, a chart, a row of metrics
and a caption. Given a feed (bar_app/live_feed.py), the panel fetches its own updates once a `period`
from the server, with no Streamlit rerun, and asks for a rerun of its fragment (a trigger) only when
`watch` changes (the job ended, a new epoch for a view that shows epochs, ...): a rerun re-renders
the whole page in the browser, a fetch redraws one chart.

plotly.js is the copy inside the installed `plotly` package, served by Streamlit's static file
serving (`python -m bar_app` and `make run` turn it on) from app/static/, where it is copied on first
use. Without static serving, or if the copy cannot be made, panels fall back to `st.progress`,
`st.plotly_chart`, `st.metric` and `st.caption`.
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import numpy as np
import plotly
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
STATIC_DIR = Path(__file__).resolve().parent / "static"  # what Streamlit serves at app/static/
STATIC_URL = "app/static/plotly.min.js"                  # relative to the page, as Streamlit documents
# plotly.js shows a button that uploads the chart to Chart Studio by default: the app promises no network.
CONFIG = {"displaylogo": False, "showSendToCloud": False, "showEditInChartStudio": False,
          "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio"]}
ASSETS = Path(__file__).resolve().parent / "assets"

# The component's code and style (package data, read once)
JS = (ASSETS / "live_plot.js").read_text(encoding="utf-8")
CSS = (ASSETS / "live_plot.css").read_text(encoding="utf-8")

_component = st.components.v2.component("bar_live_plot", js=JS, css=CSS, isolate_styles=False)


def ensure_static_plotly(static_dir: Path = STATIC_DIR, source: Path = PLOTLY_JS) -> bool:
    """Copy plotly.js next to the app for static serving (once; again when plotly was upgraded).
    False when it cannot be had: the caller falls back to st.plotly_chart."""
    target = static_dir / source.name
    try:
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            return True
        static_dir.mkdir(exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")  # two servers starting at once do not collide
        shutil.copyfile(source, tmp)
        tmp.replace(target)  # atomic: a page never loads half a file
        return True
    except OSError:
        return False


_copied = False


def available() -> bool:
    """Whether charts can be drawn by the component in this server (the copy is checked until made,
    not on every redraw)."""
    global _copied
    if not st.get_option("server.enableStaticServing"):
        return False
    _copied = _copied or ensure_static_plotly()
    return _copied


def single_precision(obj):
    """The figure's float64 arrays (plotly's typed-array form {"dtype": "f8", "bdata": base64}) as
    float32: half the bytes to send, decode and hold every second, and 7 significant digits are more
    than a chart or its hover text shows."""
    if isinstance(obj, dict):
        if obj.get("dtype") == "f8" and isinstance(obj.get("bdata"), str):
            values = np.frombuffer(base64.b64decode(obj["bdata"]), dtype="<f8").astype("<f4")
            return {**obj, "dtype": "f4", "bdata": base64.b64encode(values.tobytes()).decode()}
        return {k: single_precision(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [single_precision(v) for v in obj]
    return obj


def figure_json(fig: go.Figure) -> str:
    """The figure as the component draws it (float arrays in single precision)."""
    return pio.to_json(single_precision(fig.to_plotly_json()), validate=False)


def metric(label: str, value: str, delta: str | None = None, help: str | None = None) -> dict:
    """One number of a panel's metric row (drawn like st.metric; deltas are plain notes, never colored)."""
    return {"label": label, "value": value, "delta": delta, "help": help}


def payload(fig: go.Figure | None = None, *, metrics: list[dict] | None = None, progress: dict | None = None,
            caption: str | None = None) -> dict:
    """A panel's JSON-ready parts: what the component gets from a Streamlit run or from a feed."""
    out: dict = {}
    if progress is not None:
        out["progress"] = {"fraction": float(min(max(progress.get("fraction") or 0.0, 0.0), 1.0)),
                           "text": str(progress.get("text", ""))}
    if fig is not None:
        out["figure"] = figure_json(fig)
    if metrics is not None:
        out["metrics"] = metrics
    if caption is not None:
        out["caption"] = caption
    return out


def _noop() -> None:
    """The trigger's callback: the fragment rerun it causes is the point."""


def panel(key: str, fig: go.Figure | None = None, *, metrics: list[dict] | None = None,
          progress: dict | None = None, caption: str | None = None, feed: dict | None = None,
          watch: dict | None = None, built: dict | None = None) -> None:
    """Draw a panel under `key`: in place through the component when the server serves plotly.js,
    else with Streamlit's own elements. `feed` ({url, token, version, period}, bar_app/live_feed.py):
    the panel polls it every `period` seconds from `version` on, and reruns its fragment when the
    feed's `watch` differs from this one. `built`: the panel's parts made already (`payload`, e.g. a
    feed's shared build), drawn instead of the figure and the rest."""
    if available():
        parts = built if built is not None else payload(fig, metrics=metrics, progress=progress, caption=caption)
        data = {"src": STATIC_URL, "config": CONFIG, **parts}
        if feed is not None:
            data.update(feed={**feed, "period": float(feed.get("period", 1.0))}, watch=watch)
        _component(key=key, data=data, on_changed_change=_noop)
        return
    if progress is not None:
        p = payload(progress=progress)["progress"]
        st.progress(p["fraction"], text=p["text"])
    if fig is not None:
        st.plotly_chart(fig, key=key, width="stretch", config=CONFIG)
    if metrics:
        for col, m in zip(st.columns(len(metrics)), metrics):
            col.metric(m["label"], m["value"], m.get("delta"), help=m.get("help"), delta_color="off")
    if caption:
        st.caption(caption)


def chart(fig: go.Figure, key: str) -> None:
    """Draw `fig` under `key`: updated in place when the server serves plotly.js, else st.plotly_chart."""
    panel(key, fig)
