"""A run's figures and tables, named, from a `RunSnapshot` alone (no model, no training), and the
accuracy-versus-pruning-factor figure of several runs.

Each builder is the one figure of the dashboard view of the same name (bar_app/views/ call them,
live and replayed, with the reader's choices: an epoch, a step, a layer, the sliders), drawn with
the builders of bar_core/plots.py; it returns None where the run has nothing to show yet.
`run_figures` lists every one of them for a run at its defaults (what `bar report` writes and the
app offers as downloads); `run_tables` the tables: per-layer kept channels, the epochs, the summary
and the settings. The Connectivity view's analysis is not here (it needs the model rebuilt from the
checkpoint); its kept-channel bars are.

`pareto_figure(rows, teacher_accuracy)` is pure (plain dicts in, a Figure out) so that a sweep's
report, the app's compare view and a sweep's panel draw the same chart.
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from . import plots
from .barrier import MARGIN, SCHEDULES, TAU
from .export_files import safe_stem
from .hard_concrete import BETA, GAMMA, ZETA
from .history import RunSnapshot
from .records import EPOCH_COLUMNS

if TYPE_CHECKING:  # pandas is imported where a table is made
    import pandas as pd

# The dashboard's view labels (bar_app/views/registry.py), for grouping figures as the app does
VOLUME, BARRIER, GATES, HARD_CONCRETE, TRAINING = ("Volume & budget", "Barrier", "Gates", "Hard Concrete",
                                                    "Accuracy & speed")
CONNECTIVITY = "Connectivity"


@dataclass(frozen=True)
class NamedFigure:
    """One figure of a run: `name` is a file-name stem ("volume", "heatmap_layer1.0.bn1"), `title`
    what a reader sees above it, `view` the dashboard view that shows it."""
    name: str
    title: str
    view: str
    figure: go.Figure


# ------------------------------------------------------------------------------------------------
# One figure each, as the views draw them


def volume(snap: RunSnapshot, uirevision: str | None = None) -> go.Figure | None:
    """V/V0 against the moving budget b over the steps (Volume & budget)."""
    if not snap.has_steps or not snap.v0:
        return None
    s, lay = snap.steps, snap.layout
    budgeted = snap.config.get("method", "bar") == "bar"
    return plots.volume_figure(s["step"], s["volume"], s["budget_b"], v0=lay["v0"], a=lay["a"] if budgeted else None,
                               budget_volume=lay["budget_volume"] if budgeted else None, phase_spans=snap.phase_spans,
                               over_steps=snap.over_budget_steps, uirevision=uirevision)


def schedule(config: dict, uirevision: str | None = None) -> go.Figure | None:
    """The budget schedule the settings plan (Volume & budget before a run starts)."""
    budget, kind, epochs = config.get("budget"), config.get("schedule"), config.get("prune_epochs")
    try:
        ok = 0 < float(budget) <= 1 and kind in SCHEDULES and int(epochs) >= 1
    except (TypeError, ValueError):
        return None
    if not ok:
        return None
    return plots.schedule_figure(float(budget), kind, int(epochs), k=config.get("schedule_k"),
                                 tau=float(config.get("tau", TAU)), margin=float(config.get("margin", MARGIN)),
                                 uirevision=uirevision)


def prune_rows(snap: RunSnapshot) -> np.ndarray:
    """Indices of the snapshot's steps taken while pruning with a finite budget b."""
    if not snap.has_steps:
        return np.zeros(0, dtype=np.int64)
    s = snap.steps
    return np.flatnonzero((s["phase"] == "prune") & np.isfinite(s["budget_b"]))


@dataclass(frozen=True)
class BarrierPoint:
    """Where the barrier view stands: volume V, barrier start a and budget b (all in the run's units),
    V0, the training step and its row in `snap.steps` (both None before pruning)."""
    V: float
    a: float
    b: float
    v0: float
    step: int | None = None
    row: int | None = None


def barrier_point(snap: RunSnapshot, step: int | None = None) -> BarrierPoint | None:
    """The prune step at or before `step` (None: the last one, the end of pruning); before pruning,
    the starting budget (1 + τ)·V0 with V at V0. None without a V0."""
    if not snap.v0:
        return None
    lay, s = snap.layout, snap.steps
    v0, a = float(lay["v0"]), float(lay["a"])
    prune = prune_rows(snap)
    if len(prune) == 0:
        tau = float(snap.config.get("tau", TAU))
        return BarrierPoint(v0, a, (1 + tau) * v0, v0)
    j = prune[-1] if step is None else prune[
        min(max(int(np.searchsorted(s["step"][prune], step, side="right")) - 1, 0), len(prune) - 1)]
    a_j = float(s["barrier_a"][j]) if math.isfinite(s["barrier_a"][j]) else a
    # the curve f was evaluated on: the barrier's budget, L steps ahead of the schedule (a run from
    # before the lead recorded only the schedule's b, which its barrier used)
    wall = s["barrier_b"][j] if "barrier_b" in s and math.isfinite(s["barrier_b"][j]) else s["budget_b"][j]
    return BarrierPoint(float(s["volume"][j]), a_j, float(wall), v0, int(s["step"][j]), int(j))


def barrier(snap: RunSnapshot, step: int | None = None, uirevision: str | None = None, *,
            point: BarrierPoint | None = None) -> go.Figure | None:
    """f(V, a, b) with the volume on it at `barrier_point(snap, step)`, or at `point` when the caller
    has it already (the Barrier view shows its numbers too) (Barrier)."""
    p = barrier_point(snap, step) if point is None else point
    if p is None:
        return None
    return plots.barrier_figure(p.V, p.a, p.b, p.v0, step=p.step, uirevision=uirevision)


def layer_names(snap: RunSnapshot) -> list[str]:
    """The gated layers, in the network's order."""
    names = [l["name"] for l in snap.layout.get("layers", [])]
    return names or (list(snap.gates[-1][1]) if snap.gates else [])


def gate_histograms(snap: RunSnapshot, index: int = -1, uirevision: str | None = None, *,
                    cols: int = 3) -> go.Figure | None:
    """Per-layer histograms of P(z > 0) at the `index`-th gate snapshot (default: the last epoch),
    `cols` panels a row (Gates)."""
    if not snap.gates:
        return None
    epoch, g = snap.gates[index]
    layers = [l for l in layer_names(snap) if l in g]
    return plots.gate_histograms_figure(layers, [g[l]["prob_open"] for l in layers], cols=cols, epoch=epoch,
                                        uirevision=uirevision)


def channel_heatmap(snap: RunSnapshot, layer: str, order: str = "index",
                    uirevision: str | None = None) -> go.Figure | None:
    """One layer's P(z > 0) per channel and epoch, × where a channel died (Gates)."""
    if not snap.gates or layer not in snap.gates[-1][1]:
        return None
    epochs = np.array([e for e, _ in snap.gates], dtype=float)
    return plots.channel_heatmap_figure(epochs, np.stack([g[layer]["prob_open"] for _, g in snap.gates]), layer=layer,
                                        test_gate_matrix=np.stack([g[layer]["test_gate"] for _, g in snap.gates]),
                                        order=order, uirevision=uirevision)


def undecided_layer(gates: dict, layers: Sequence[str]) -> str:
    """Of `layers`, the one holding the most undecided channel (log α nearest 0) in `gates` (one epoch's)."""
    return min(layers, key=lambda l: float(np.min(np.abs(gates[l]["log_alpha"]))))


def channel_picks(log_alpha) -> list[int]:
    """Three telling channels of a layer: the most open, the most undecided (log α nearest 0) and the
    most closed one, each once."""
    la = np.asarray(log_alpha, dtype=float)
    return list(dict.fromkeys([int(np.argmax(la)), int(np.argmin(np.abs(la))), int(np.argmin(la))]))


def hard_concrete(snap: RunSnapshot | None = None, log_alpha: float = 0.0, beta: float | None = None,
                  gamma: float | None = None, zeta: float | None = None, *,
                  channels: Sequence[tuple[str, float]] | None = None, uirevision: str | None = None) -> go.Figure:
    """The gate's inverse CDF at `log_alpha` with β, γ, ζ (None: the run's settings, else the
    defaults) and the curves of `channels`, (label, log α) pairs: the Hard Concrete view passes its
    sliders and chosen channels. `channels` None: as the view starts, three real channels of the last
    epoch (`channel_picks` of the `undecided_layer`) (Hard Concrete)."""
    cfg = snap.config if snap is not None else {}
    beta, gamma, zeta = (float(cfg.get(k, d)) if v is None else v
                         for k, d, v in (("beta", BETA, beta), ("gamma", GAMMA, gamma), ("zeta", ZETA, zeta)))
    if channels is None:
        channels = []
        if snap is not None and snap.gates:
            epoch, g = snap.gates[-1]
            layers = [l for l in layer_names(snap) if l in g]
            if layers:
                layer = undecided_layer(g, layers)
                la = np.asarray(g[layer]["log_alpha"], dtype=float)
                channels = [(f"{layer} · ch {i} (epoch {epoch})", float(la[i])) for i in channel_picks(la)]
    return plots.icdf_figure(log_alpha, beta, gamma, zeta, channels=channels, uirevision=uirevision or "hc")


def layer_rows(snap: RunSnapshot, index: int = -1) -> list[dict]:
    """Per gated layer at the `index`-th gate snapshot: kept (ẑ > 0) / total channels, volume kept."""
    if not snap.gates:
        return []
    _, g = snap.gates[index]
    layers = snap.layout.get("layers") or [{"name": n, "channels": len(v["test_gate"]), "area": 1} for n, v in g.items()]
    return plots.layer_table(layers, g)


def kept_channels(snap: RunSnapshot, index: int = -1, uirevision: str | None = None, *,
                  rows: Sequence[dict] | None = None) -> go.Figure | None:
    """Kept and pruned channels per gated layer: `rows` (the Connectivity view's, from its analysis of
    the network), else `layer_rows(snap, index)`, from the gates alone (Connectivity)."""
    rows = layer_rows(snap, index) if rows is None else rows
    return plots.kept_bars_figure(rows, uirevision=uirevision) if rows else None


def epoch_series(snap: RunSnapshot) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Per epoch, its last step and its test accuracy (NaN where none), and the dense teacher's
    accuracy (the latest recorded; None without one)."""
    ep_steps = np.array([e.get("step") or 0 for e in snap.epochs], dtype=float)
    acc = np.array([np.nan if e.get("test_acc") is None else e["test_acc"] for e in snap.epochs], dtype=float)
    teacher = next((e.get("teacher_acc") for e in reversed(snap.epochs) if e.get("teacher_acc") is not None), None)
    return ep_steps, acc, teacher


def training(snap: RunSnapshot, uirevision: str | None = None, *,
             series: tuple[np.ndarray, np.ndarray, float | None] | None = None) -> go.Figure | None:
    """Test accuracy per epoch (and the teacher's), the loss terms and images/s (Accuracy & speed);
    `series`: `epoch_series(snap)` when the caller has it already (the view's metrics use it)."""
    if not snap.has_steps:
        return None
    s = snap.steps
    ep_steps, acc, teacher = epoch_series(snap) if series is None else series
    return plots.training_figure(s["step"], s["loss"], s["loss_data"], s["images_per_s"], epoch_steps=ep_steps,
                                 test_acc=acc, teacher_acc=teacher, phase_spans=snap.phase_spans,
                                 uirevision=uirevision)


# ------------------------------------------------------------------------------------------------
# All of a run's figures and tables


def run_figures(snap: RunSnapshot, *, heatmaps: bool = True) -> list[NamedFigure]:
    """Every figure the folder alone can draw, in the views' order; `heatmaps`: one channel × epoch
    heatmap per gated layer too."""
    out: list[NamedFigure] = []

    def add(name: str, title: str, view: str, fig: go.Figure | None) -> None:
        if fig is not None:
            out.append(NamedFigure(name, title, view, fig))

    add("volume", "Volume V against the moving budget b", VOLUME, volume(snap))
    add("schedule", "The planned budget schedule", VOLUME, schedule(snap.config))
    end = barrier_point(snap)
    add("barrier", "The barrier at the end of pruning" + (
        f" (step {end.step})" if end is not None and end.step is not None else " (pruning has not started)"),
        BARRIER, barrier(snap, point=end))
    if snap.gates:
        last = snap.gates[-1][0]
        add("gate_histograms", f"P(z > 0) per channel, by layer, at the last epoch ({last})", GATES,
            gate_histograms(snap))
        if heatmaps:
            taken = set()
            for layer in layer_names(snap):
                stem = safe_stem(f"heatmap_{layer}", taken)
                taken.add(stem)
                add(stem, f"{layer}: P(z > 0) per channel and epoch", GATES, channel_heatmap(snap, layer))
    add("hard_concrete", "The Hard Concrete gate with channels of the last epoch", HARD_CONCRETE,
        hard_concrete(snap))
    add("kept_channels", "Channels kept per gated layer at the last epoch", CONNECTIVITY, kept_channels(snap))
    add("training", "Accuracy, loss terms and training speed", TRAINING, training(snap))
    return out


def _cell(v):
    """A table cell: None as NaN (what pandas reads back from an empty CSV cell), lists and dicts as JSON."""
    if v is None:
        return math.nan
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return v


def epochs_table(snap: RunSnapshot) -> pd.DataFrame:
    """One row per epoch, the epochs.csv columns."""
    import pandas as pd

    columns = list(snap.epochs[0]) if snap.epochs else list(EPOCH_COLUMNS)
    return pd.DataFrame([{c: _cell(e.get(c)) for c in columns} for e in snap.epochs], columns=columns)


def layers_table(snap: RunSnapshot, index: int = -1) -> pd.DataFrame:
    """Per gated layer: kept / total channels and volume at the `index`-th gate snapshot."""
    import pandas as pd

    rows = layer_rows(snap, index)
    columns = ["layer", "kept", "total", "kept %", "map size", "volume kept", "volume at start"]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else columns)


def summary_table(snap: RunSnapshot) -> pd.DataFrame:
    """The run's outcome as one row: summary.json (its state and error included); a run without a
    summary yet has its state only."""
    import pandas as pd

    summary = dict(snap.summary) if snap.summary else {"state": snap.state, "error": snap.error}
    return pd.DataFrame([{k: _cell(v) for k, v in summary.items()}])


def settings_table(snap: RunSnapshot) -> pd.DataFrame:
    """The run's settings (config.json) as setting, value (text: numbers as written, lists as JSON)."""
    import pandas as pd

    rows = [{"setting": k, "value": math.nan if v is None else (v if isinstance(v, str) else json.dumps(v))}
            for k, v in snap.config.items()]
    return pd.DataFrame(rows, columns=["setting", "value"])


def run_tables(snap: RunSnapshot) -> dict[str, pd.DataFrame]:
    """The run's tables by file stem: layers (kept channels per layer), epochs, summary, settings."""
    return {"layers": layers_table(snap), "epochs": epochs_table(snap), "summary": summary_table(snap),
            "settings": settings_table(snap)}


# ------------------------------------------------------------------------------------------------
# Several runs: accuracy against the pruning factor


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def pareto_points(rows: Iterable) -> list[dict]:
    """The plottable runs of `rows` as {name, factor, accuracy, volume_ratio}: factor is the row's
    pruning_factor (1/B), else 1/volume_ratio; rows without an accuracy or a factor are left out.
    Rows are dicts, or objects with `as_dict()` (bar_core.catalog.RunRow)."""
    out = []
    for r in rows:
        r = r.as_dict() if hasattr(r, "as_dict") else dict(r)
        factor = _number(r.get("pruning_factor"))
        ratio = _number(r.get("volume_ratio"))
        if factor is None and ratio:
            factor = 1.0 / ratio
        acc = _number(r.get("pruned_accuracy"))
        if factor is None or factor <= 0 or acc is None:
            continue
        out.append({"name": str(r.get("name", "")), "factor": factor, "accuracy": acc, "volume_ratio": ratio})
    return out


def pareto_front(factors: Sequence[float], accuracies: Sequence[float]) -> np.ndarray:
    """Which points no other point beats: none has a factor ≥ and an accuracy ≥ with one of them >."""
    f, a = np.asarray(factors, dtype=float), np.asarray(accuracies, dtype=float)
    keep = np.ones(len(f), dtype=bool)
    for i in range(len(f)):
        better = (f >= f[i]) & (a >= a[i]) & ((f > f[i]) | (a > a[i]))
        keep[i] = not better.any()
    return keep


def pareto_figure(rows: Iterable, teacher_accuracy: float | None = None, *, title: str | None = None,
                  uirevision: str | None = None) -> go.Figure:
    """Accuracy against the pruning factor, one point per run, the factor on a log2 axis.

    rows: dicts (or RunRow) with `name`, `pruned_accuracy` (a fraction) and `pruning_factor` (1/B;
    else `volume_ratio`, giving 1/(V/V0)). Runs that beat every other in factor or accuracy (the Pareto
    front: no other run is at least as good in both) are ringed and joined by a line;
    `teacher_accuracy` (the dense network's) is a dashed line across. Pure: no files read."""
    rows = list(rows)
    points = pareto_points(rows)
    skipped = len(rows) - len(points)
    f = np.array([p["factor"] for p in points], dtype=float)
    acc = np.array([p["accuracy"] for p in points], dtype=float)
    # names are user text: plotly renders a few HTML tags in hover text, so they go in escaped
    names = [html.escape(p["name"]) for p in points]
    ratio = ["—" if p["volume_ratio"] is None else f"{p['volume_ratio']:.4f}" for p in points]
    front = pareto_front(f, acc)
    hover = "%{customdata[0]}<br>pruning factor %{x:.3g}×<br>accuracy %{y:.2%}<br>V/V0 %{customdata[1]}<extra></extra>"
    custom = np.array(list(zip(names, ratio)), dtype=object).reshape(len(points), 2)
    traces = [go.Scatter(x=f, y=acc, mode="markers", name="run", customdata=custom, hovertemplate=hover,
                         marker=dict(size=9, color="#1f77b4", opacity=0.8))]
    if front.any():
        order = np.argsort(f[front])
        traces.append(go.Scatter(x=f[front][order], y=acc[front][order], mode="lines+markers",
                                 name=f"Pareto front ({int(front.sum())} runs)", customdata=custom[front][order],
                                 hovertemplate=hover, line=dict(color="#ff7f0e", width=1.5, dash="dot"),
                                 marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(color="#ff7f0e", width=2.5))))
    shapes, annotations = [], []
    teacher = _number(teacher_accuracy)
    if teacher is not None:
        shapes.append(dict(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=teacher, y1=teacher,
                           line=dict(color="#7f7f7f", dash="dash", width=1.5)))
        annotations.append(dict(xref="x domain", yref="y", x=0, y=teacher, showarrow=False, xanchor="left",
                                yanchor="bottom", text=f"dense teacher {100 * teacher:.1f}%",
                                font=dict(size=11, color="#7f7f7f")))
    if skipped:
        annotations.append(dict(xref="paper", yref="paper", x=1, y=1.0, showarrow=False, xanchor="right",
                                yanchor="bottom", text=f"{skipped} run(s) without an accuracy yet not shown",
                                font=dict(size=10, color="#7f7f7f")))
    lo = math.floor(math.log2(f.min())) if len(f) else 0
    hi = math.ceil(math.log2(f.max())) if len(f) else 3
    hi = max(hi, lo + 1)
    ticks = [2.0 ** k for k in range(lo, hi + 1)]
    xaxis = dict(title=dict(text="pruning factor 1/B (log2 scale)"), type="log", tickvals=ticks,
                 ticktext=[f"{t:g}×" for t in ticks], range=[math.log10(ticks[0]) - 0.08, math.log10(ticks[-1]) + 0.08],
                 ticklabeloverflow="allow")
    ys = list(acc) + ([teacher] if teacher is not None else [])
    y_lo = max(0.0, min(ys) - 0.05) if ys else 0.0
    y_hi = min(1.0, max(ys) + 0.05) if ys else 1.0
    layout = dict(title=dict(text=title or f"Accuracy against the pruning factor ({len(points)} runs)", x=0.01,
                             font=dict(size=15)),
                  template="plotly_white", margin=plots.MARGIN, uirevision=uirevision or "pareto",
                  legend=dict(orientation="h", y=-0.24, yanchor="top", x=0), height=420,
                  xaxis=xaxis, yaxis=dict(title=dict(text="test accuracy (pruned)"), tickformat=".0%",
                                          range=[y_lo, y_hi], ticklabeloverflow="allow"),
                  shapes=shapes, annotations=annotations)
    return go.Figure(data=traces, layout=layout)


def runs_pareto(rows: Iterable, *, uirevision: str | None = None) -> go.Figure | None:
    """`pareto_figure` of the runs among `rows` (bar_core.catalog.RunRow) that ended with an accuracy
    and a pruning factor, the dense teacher's accuracy the first one among them records; None while
    no run has (the app's compare view and a sweep's panel)."""
    scored = [r for r in rows if r.pruned_accuracy is not None and r.pruning_factor is not None]
    if not scored:
        return None
    teacher = next((r.teacher_accuracy for r in scored if r.teacher_accuracy is not None), None)
    return pareto_figure(scored, teacher, uirevision=uirevision)
