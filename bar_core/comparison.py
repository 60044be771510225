"""Comparing runs: pure builders (run snapshots in, plotly figures and plain tables out).

Runs differ in length (budgets, epochs, extra prune steps), so curves over training are drawn against
training progress: a step's share of the run's planned steps, in percent. A run's steps past its plan
(extra prune steps) go beyond 100 %.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from . import figures
from .history import RunSnapshot
from .plots import _base_layout, _f64, _figure, _t, rolling_median

# plotly's default qualitative colours: the same run keeps its colour in every figure of a comparison
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


def run_color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def progress_percent(snap: RunSnapshot) -> np.ndarray:
    """Each drawn step's position in the run, 100 · step / planned steps (the step index itself when the
    run has no plan recorded)."""
    step = _f64(snap.steps.get("step", []))
    total = snap.layout.get("total_steps") or 0
    return 100.0 * step / total if total else step


def _overlay(names: Sequence[str], xs, ys, *, title: str, x_title: str, y_title: str, y_format: str | None = None,
             mode: str = "lines", uirevision: str | None = None, height: int = 420) -> go.Figure:
    traces = [_t("scatter", x=_f64(x), y=_f64(y), mode=mode, name=name, line=dict(color=run_color(i), width=1.8))
              for i, (name, x, y) in enumerate(zip(names, xs, ys))]
    yaxis = dict(title=y_title)
    if y_format:
        yaxis["tickformat"] = y_format
    layout = _base_layout(title, uirevision, height=height, xaxis=dict(title=x_title), yaxis=yaxis)
    return _figure(traces, layout)


def volume_overlay_figure(names: Sequence[str], snaps: Sequence[RunSnapshot], uirevision: str | None = None) -> go.Figure:
    """V/V0 of every run against training progress, each run's final budget B as a dotted line in its colour."""
    fig = _overlay(names, [progress_percent(s) for s in snaps], [s.steps.get("volume_ratio", []) for s in snaps],
                   title="Volume V/V0 during training", x_title="training progress (% of planned steps)",
                   y_title="V / V0", y_format=".0%", uirevision=uirevision)
    for i, s in enumerate(snaps):
        budget = s.config.get("budget")
        if isinstance(budget, (int, float)) and s.config.get("method", "bar") == "bar":  # the others have none
            fig.add_shape(type="line", xref="x domain", x0=0, x1=1, y0=budget, y1=budget,
                          line=dict(color=run_color(i), dash="dot", width=1))
    return fig


def accuracy_overlay_figure(names: Sequence[str], snaps: Sequence[RunSnapshot],
                            uirevision: str | None = None) -> go.Figure:
    """Test accuracy after every epoch (epoch 0: the network before pruning), one line per run."""
    xs, ys = [], []
    for s in snaps:
        rows = [e for e in s.epochs if e.get("test_acc") is not None]
        xs.append([e["epoch"] for e in rows])
        ys.append([e["test_acc"] for e in rows])
    return _overlay(names, xs, ys, title="Test accuracy per epoch", x_title="epoch", y_title="test accuracy",
                    y_format=".1%", mode="lines+markers", uirevision=uirevision)


def loss_overlay_figure(names: Sequence[str], snaps: Sequence[RunSnapshot], uirevision: str | None = None) -> go.Figure:
    """The training objective L (rolling median over 25 steps: single steps are noisy), log scale."""
    fig = _overlay(names, [progress_percent(s) for s in snaps],
                   [rolling_median(s.steps.get("loss", [])) for s in snaps], title="Training loss L (rolling median)",
                   x_title="training progress (% of planned steps)", y_title="loss (log)", uirevision=uirevision)
    fig.update_yaxes(type="log")
    return fig


def gates_figure(name: str, snap: RunSnapshot, cols: int = 2, uirevision: str | None = None) -> go.Figure | None:
    """One run's per-layer P(z>0) histograms at its last epoch (None if it recorded no epoch yet); the
    zoom is kept across runs and epochs unless `uirevision` says otherwise."""
    fig = figures.gate_histograms(snap, cols=cols, uirevision=uirevision or "cmp-gates")
    if fig is not None:
        fig.update_layout(title=dict(text=f"{name}: P(z > 0) per layer, epoch {snap.gates[-1][0]}"))
    return fig


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def settings_diff(configs: dict[str, dict]) -> list[dict]:
    """Only the settings in which the runs differ: one row per setting, {"setting": name, run: value, ...};
    a setting a run's config lacks shows as None. Free-form notes (`extra`) are left out."""
    names = list(configs)
    keys = []
    for c in configs.values():
        keys += [k for k in c if k not in keys and k != "extra"]
    rows = []
    for k in keys:
        values = [configs[n].get(k) for n in names]
        if not all(_same(values[0], v) for v in values[1:]):
            rows.append({"setting": k, **dict(zip(names, values))})
    return rows
