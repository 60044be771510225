"""Live panels that stay mounted while they update: a small Streamlit component around `Plotly.react`.

`st.plotly_chart` gives a changed figure a new element id, so the browser throws the chart away and
builds a new one at every live refresh: about 0.1 of a core of Chromium's CPU at a 1 s refresh,
taken from the training on a 2-core laptop, and the reader's zoom, pan and hover are lost every
second. This component keeps one Plotly div per chart key and hands each new figure to
`Plotly.react`, which redraws in place and keeps the view the reader chose (the figures set
`uirevision`).

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
CONFIG = {"displaylogo": False}

# Runs in the page (an ES module): called again with the new data at every Streamlit run, on the
# same element. The font is the page's (read at the first draw), as with st.plotly_chart's Streamlit
# theme. A page in a background browser tab neither draws nor polls (the training gets the CPU) and
# catches up when shown. An error is shown next to the chart, which tries again with the next figure.
JS = """
export default function ({ data, parentElement, setTriggerValue }) {
  let root = parentElement.querySelector("div.bar-live");
  if (!root) {
    root = document.createElement("div");
    root.className = "bar-live";
    parentElement.appendChild(root);
    for (const part of ["progress", "plot", "error", "feedError", "metrics", "caption"]) {
      root[part] = document.createElement("div");
      root[part].className = "bar-live-" + part.replace("E", "-e");
      root.appendChild(root[part]);
    }
    const div = root.plot;
    new ResizeObserver(() => { if (div._fullLayout && window.Plotly) window.Plotly.Plots.resize(div); }).observe(div);
    if (!window.__barOnShow) {
      window.__barOnShow = () => {
        if (document.hidden) return;
        document.querySelectorAll("div.bar-live").forEach(draw);
        tick();
      };
      document.addEventListener("visibilitychange", window.__barOnShow);
    }
  }
  root.barSrc = data.src;
  root.barConfig = data.config;
  root.barTrigger = setTriggerValue;
  root.barWatch = JSON.stringify(data.watch ?? null);
  root.barAsked = false;
  // From Streamlit the panel is whole: a part it lacks now (a finished job's feed caption) goes.
  root.feedError.textContent = "";
  if (!data.progress) root.progress.replaceChildren();
  if (!data.metrics) root.metrics.replaceChildren();
  if (data.caption === undefined) root.caption.textContent = "";
  apply(root, data);
  poll(root, data);
  return () => stop(root);
}

// One update of the panel: from Streamlit (data) or from the feed. Absent parts are left as they are.
function apply(root, panel) {
  if (panel.progress) showProgress(root.progress, panel.progress);
  if (panel.metrics) showMetrics(root.metrics, panel.metrics);
  if (panel.caption !== undefined) root.caption.textContent = panel.caption || "";
  if (panel.error) root.feedError.textContent = "This view could not be updated: " + panel.error;
  if (panel.figure) {
    root.barNext = panel.figure;
    if (!document.hidden) draw(root);  // a hidden page draws the latest figure when shown
  }
  if (panel.watch !== undefined && JSON.stringify(panel.watch) !== root.barWatch && !root.barAsked) {
    root.barAsked = true;  // once: the rerun renders this panel again with the new watch
    root.barTrigger("changed", JSON.stringify(panel.watch));
  }
}

// One poller for the page: every panel with a feed is asked for in one request a refresh (each
// request costs the browser a few ms of CPU across its processes).
const feeds = (window.__barFeeds ??= { panels: new Map(), timer: null, period: 0, busy: false });

function stop(root) {
  feeds.panels.delete(root);
  schedule();
}

function poll(root, data) {
  feeds.panels.delete(root);
  if (data.feed) feeds.panels.set(root, { ...data.feed });
  schedule();
}

function schedule() {
  for (const root of [...feeds.panels.keys()]) if (!root.isConnected) feeds.panels.delete(root);
  const period = Math.min(...[...feeds.panels.values()].map((f) => f.period || 1));
  if (!feeds.panels.size) {
    clearInterval(feeds.timer);
    feeds.timer = null;
  } else if (!feeds.timer || feeds.period !== period) {
    clearInterval(feeds.timer);
    feeds.period = period;
    feeds.timer = setInterval(tick, 1000 * period);
  }
}

async function tick() {
  if (document.hidden || feeds.busy || !feeds.panels.size) return;
  const asked = [...feeds.panels.entries()].filter(([root]) => root.isConnected);
  if (!asked.length) return schedule();
  feeds.busy = true;
  try {
    const q = asked.map(([, f]) => f.token + ":" + f.version).join(",");
    // a request that hangs (a laptop waking up, a stalled proxy) must not stop the updates for good
    const r = await fetch(asked[0][1].url + "?q=" + encodeURIComponent(q),
                          { cache: "no-store", signal: AbortSignal.timeout(Math.max(10000, 5000 * feeds.period)) });
    if (!r.ok) throw new Error("the server answered " + r.status);
    const answers = await r.json();
    for (const [root, f] of asked) {
      if (feeds.panels.get(root) !== f) continue;  // redrawn by Streamlit meanwhile: its data is newer
      root.feedError.textContent = "";
      const panel = answers[f.token];
      if (panel === false) {  // the server forgot this feed: the fragment's next run publishes it again
        stop(root);
        if (!root.barAsked) { root.barAsked = true; root.barTrigger("changed", "republish"); }
        continue;
      }
      if (!panel) continue;   // null: nothing new
      if (panel.version) f.version = panel.version;
      apply(root, panel);
    }
  } catch (err) {
    for (const [root, f] of asked) {
      if (feeds.panels.get(root) === f) root.feedError.textContent = "Live update failed (retrying): " + err.message;
    }
  } finally {
    feeds.busy = false;
  }
}

function showProgress(el, p) {
  if (!el.bar || !el.contains(el.bar)) {
    el.text = document.createElement("div");
    el.text.className = "bar-live-progress-text";
    el.track = document.createElement("div");
    el.track.className = "bar-live-progress-track";
    el.bar = document.createElement("div");
    el.bar.className = "bar-live-progress-fill";
    el.track.appendChild(el.bar);
    el.append(el.text, el.track);
    el.setAttribute("role", "progressbar");
    el.setAttribute("aria-valuemin", "0");
    el.setAttribute("aria-valuemax", "100");
  }
  const pct = Math.round(100 * Math.min(Math.max(p.fraction || 0, 0), 1));
  el.text.textContent = p.text || "";
  el.bar.style.width = pct + "%";
  el.setAttribute("aria-valuenow", String(pct));
}

function showMetrics(el, metrics) {
  if (el.children.length !== metrics.length) {
    el.replaceChildren(...metrics.map(() => {
      const m = document.createElement("div");
      m.className = "bar-live-metric";
      m.setAttribute("data-testid", "barLiveMetric");
      for (const part of ["label", "value", "delta"]) {
        const d = document.createElement("div");
        d.className = "bar-live-metric-" + part;
        m.appendChild(d);
      }
      return m;
    }));
  }
  metrics.forEach((spec, i) => {
    const [label, value, delta] = el.children[i].children;
    label.textContent = spec.label;
    label.title = spec.help || "";
    value.textContent = spec.value;
    delta.textContent = spec.delta || "";
  });
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

function draw(root) {
  const div = root.plot;
  const text = root.barNext;
  // A view that changes once an epoch sends the same figure every time: nothing to draw.
  if (!text || div.barFigure === text) return;
  div.barFigure = text;
  const failed = (err) => {
    if (div.barFigure !== text) return;  // a newer figure is already being drawn
    div.barFigure = null;                // try again with the next update
    root.error.textContent = "This chart could not be drawn: " + err.message;
  };
  let figure;
  try {
    figure = JSON.parse(text);
  } catch (err) {
    return failed(err);
  }
  const layout = figure.layout || {};
  window.__barFont ??= getComputedStyle(document.body).fontFamily;  // read once: it forces a style pass
  layout.font = { family: window.__barFont, ...(layout.font || {}) };
  plotly(root.barSrc)
    .then((Plotly) => Plotly.react(div, figure.data || [], layout, root.barConfig))
    .then(() => { if (div.barFigure === text) root.error.textContent = ""; })
    .catch(failed);
}
"""

# Streamlit's theme reaches the component as CSS variables; the fallbacks are its light theme.
CSS = """
.bar-live-progress { margin: 0.25rem 0 0.75rem 0; }
.bar-live-progress-text { font-size: 0.875rem; margin-bottom: 0.35rem; }
.bar-live-progress-track { height: 0.5rem; border-radius: 0.25rem;
  background: var(--st-secondary-background-color, #f0f2f6); overflow: hidden; }
.bar-live-progress-fill { height: 100%; background: var(--st-primary-color, #ff4b4b); }
.bar-live-metrics { display: flex; gap: 1rem; }
.bar-live-metrics:empty, .bar-live-error:empty, .bar-live-feed-error:empty, .bar-live-caption:empty,
.bar-live-progress:empty { display: none; }
.bar-live-metric { flex: 1 1 0; min-width: 0; padding: 0.25rem 0; }
.bar-live-metric-label { font-size: 0.875rem; }
.bar-live-metric-value { font-size: 2.25rem; line-height: 1.2; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.bar-live-metric-delta { font-size: 0.875rem; opacity: 0.6; min-height: 1.2em; }
.bar-live-error, .bar-live-feed-error { color: #d62728; font-size: 0.875rem; }
.bar-live-caption { font-size: 0.875rem; opacity: 0.6; margin-top: 0.25rem; }
"""

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
          watch: dict | None = None) -> None:
    """Draw a panel under `key`: in place through the component when the server serves plotly.js,
    else with Streamlit's own elements. `feed` ({url, token, version, period}, bar_app/live_feed.py):
    the panel polls it every `period` seconds from `version` on, and reruns its fragment when the
    feed's `watch` differs from this one."""
    if available():
        data = {"src": STATIC_URL, "config": CONFIG,
                **payload(fig, metrics=metrics, progress=progress, caption=caption)}
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
