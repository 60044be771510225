"""Charts that stay mounted while they update: a small Streamlit component around `Plotly.react`.

`st.plotly_chart` gives a changed figure a new element id, so the browser throws the chart away and
builds a new one at every live refresh: about 0.1 of a core of Chromium's CPU at a 1 s refresh,
taken from the training on a 2-core laptop, and the reader's zoom, pan and hover are lost every
second. This component keeps one Plotly div per chart key and hands each new figure to
`Plotly.react`, which redraws in place and keeps the view the reader chose (the figures set
`uirevision`).

plotly.js is the copy inside the installed `plotly` package, served by Streamlit's static file
serving (`python -m app` and `make run` turn it on) from app/static/, where it is copied on first
use. Without static serving, or if the copy cannot be made, charts fall back to `st.plotly_chart`.
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
CONFIG = {"displaylogo": False}

# Runs in the page (an ES module): called again with the new data at every refresh, on the same
# element. The font is the page's (read at the first draw), as with st.plotly_chart's Streamlit theme.
# A page in a background browser tab does not draw (the training gets the CPU) and catches up when
# shown. An error is shown next to the chart, which tries again with the next figure.
JS = """
export default function ({ data, parentElement }) {
  let div = parentElement.querySelector("div.bar-live-plot");
  if (!div) {
    div = document.createElement("div");
    div.className = "bar-live-plot";
    parentElement.appendChild(div);
    div.barError = document.createElement("div");
    div.barError.className = "bar-live-plot-error";
    parentElement.appendChild(div.barError);
    new ResizeObserver(() => { if (div._fullLayout && window.Plotly) window.Plotly.Plots.resize(div); }).observe(div);
  }
  div.barNext = data;
  if (document.hidden) {
    // Nobody is looking (another browser tab is in front): draw the latest figure when the page is
    // shown again, and leave the CPU to the training meanwhile.
    if (!window.__barOnShow) {
      window.__barOnShow = () => { if (!document.hidden) document.querySelectorAll("div.bar-live-plot").forEach(draw); };
      document.addEventListener("visibilitychange", window.__barOnShow);
    }
    return;
  }
  draw(div);
}

function plotly(src) {
  window.__barPlotly ??= new Promise((resolve, reject) => {
    if (window.Plotly) return resolve(window.Plotly);
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => { window.__barPlotly = null; script.remove(); reject(new Error("could not load " + src)); };
    document.head.appendChild(script);
  });
  return window.__barPlotly;
}

function draw(div) {
  const data = div.barNext;
  // A view that changes once an epoch sends the same figure every second: nothing to draw.
  if (!data || div.barFigure === data.figure) return;
  div.barFigure = data.figure;
  const failed = (err) => {
    if (div.barFigure !== data.figure) return;  // a newer figure is already being drawn
    div.barFigure = null;                       // try again with the next update
    div.barError.textContent = "This chart could not be drawn: " + err.message;
  };
  let figure;
  try {
    figure = JSON.parse(data.figure);
  } catch (err) {
    return failed(err);
  }
  const layout = figure.layout || {};
  window.__barFont ??= getComputedStyle(document.body).fontFamily;  // read once: it forces a style pass
  layout.font = { family: window.__barFont, ...(layout.font || {}) };
  plotly(data.src)
    .then((Plotly) => Plotly.react(div, figure.data || [], layout, data.config))
    .then(() => { if (div.barFigure === data.figure) div.barError.textContent = ""; })
    .catch(failed);
}
"""

_component = st.components.v2.component("bar_live_plot", js=JS, isolate_styles=False)


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


def chart(fig: go.Figure, key: str) -> None:
    """Draw `fig` under `key`: updated in place when the server serves plotly.js, else st.plotly_chart."""
    if available():
        figure = pio.to_json(single_precision(fig.to_plotly_json()), validate=False)
        _component(key=key, data={"src": STATIC_URL, "figure": figure, "config": CONFIG})
    else:
        st.plotly_chart(fig, key=key, width="stretch", config=CONFIG)
