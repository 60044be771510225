"""Pure plot builders: numbers in, `plotly.graph_objects.Figure` out. No Streamlit here.

Every builder takes plain numpy arrays / floats / dicts (what a `RunSnapshot` holds), draws with
numpy arrays (sent to the browser as typed arrays) and never more than a few thousand points per
trace: the caller downsamples long histories. `uirevision` keeps zoom and legend choices while a
live view redraws every second.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from bar_core.barrier import MARGIN as BARRIER_MARGIN
from bar_core.barrier import TAU, barrier, barrier_start, budget_at
from bar_core.hard_concrete import BETA, GAMMA, ZETA, icdf, prob_one, prob_zero, test_gate

PHASE_COLORS = {"pretrain": "#9e9e9e", "prune": "#ff9800", "finetune": "#4caf50"}
PHASE_LABELS = {"pretrain": "pretrain", "prune": "prune (barrier on)", "finetune": "fine-tune"}
LINE = {"V": "#1f77b4", "b": "#d62728", "a": "#2ca02c", "budget": "#7f7f7f", "over": "#d62728"}
MARGIN = dict(l=60, r=20, t=50, b=100)


def _base_layout(title: str, uirevision: str | None, **extra) -> dict:
    layout = dict(title=dict(text=title, x=0.01, font=dict(size=15)), margin=MARGIN, template="plotly_white",
                  uirevision=uirevision or title,
                  legend=dict(orientation="h", y=-0.24, yanchor="top", x=0))
    layout.update(extra)
    return layout


def _t(kind: str, **props) -> dict:
    """A trace as a plain dict (validated in the tests, not on every redraw)."""
    return {"type": kind, **props}


def _figure(traces: list[dict], layout: dict, frames: list[dict] | None = None) -> go.Figure:
    """A Figure without plotly's per-property validation: ~10x faster to build, which matters for a
    view redrawn every second. tests/test_plots.py re-validates every builder's output.

    Validation would also have turned an axis title string into {"text": ...}; plotly.js 3 and later
    (Streamlit ships 4) ignore a plain string, so that is done here.

    Tick labels may overflow (they never reach past these margins): plotly's default for numeric axes
    ("hide past div") measures every tick label's box at every draw, a fifth of plotly's time in a live
    redraw (Chromium CPU profile while training)."""
    for key, axis in layout.items():
        if key.startswith(("xaxis", "yaxis")) and isinstance(axis, dict):
            if isinstance(axis.get("title"), str):
                axis["title"] = {"text": axis["title"]}
            axis.setdefault("ticklabeloverflow", "allow")
    return go.Figure(data=traces, layout=layout, frames=frames, _validate=False)


def _f64(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


def phase_shapes(spans: Sequence[tuple[str, int, int]], xref: str = "x", yref: str = "y domain") -> list[dict]:
    """A translucent band per phase span (phase, first step, end step)."""
    return [dict(type="rect", xref=xref, yref=yref, x0=s0, x1=s1, y0=0, y1=1, line=dict(width=0), layer="below",
                 fillcolor=PHASE_COLORS.get(ph, "#cccccc"), opacity=0.12) for ph, s0, s1 in spans]


def phase_annotations(spans: Sequence[tuple[str, int, int]], xref: str = "x", yref: str = "y domain") -> list[dict]:
    return [dict(x=(s0 + s1) / 2, y=1.0, xref=xref, yref=yref, text=PHASE_LABELS.get(ph, ph), showarrow=False,
                 yanchor="bottom", font=dict(size=11, color=PHASE_COLORS.get(ph, "#555"))) for ph, s0, s1 in spans]


# ------------------------------------------------------------------------------------------------
# a. Volume V versus the budget b


def budget_levels(a: float, budget: float) -> tuple[list[dict], list[dict]]:
    """Lines across the plot at a/V0 (dotted) and B (solid), in units of V0, labelled at the right:
    B's label above its line and a's below, since a sits just under B."""
    shapes, annotations = [], []
    for y, name, color, dash, side in ((a, "a", LINE["a"], "dot", "top"),
                                       (budget, "B·V0", LINE["budget"], "solid", "bottom")):
        shapes.append(dict(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=y, y1=y,
                           line=dict(color=color, width=1.5, dash=dash)))
        annotations.append(dict(xref="x domain", yref="y", x=1.0, y=y, text=f"{name} = {y:.4g}", showarrow=False,
                                xanchor="right", yanchor=side, font=dict(size=11, color=color)))
    return shapes, annotations


def volume_figure(step, volume, budget_b, *, v0: float, a: float | None, budget_volume: float | None,
                  phase_spans: Sequence[tuple[str, int, int]] = (), over_steps=(), uirevision: str | None = None,
                  marker_step: int | None = None) -> go.Figure:
    """V/V0 and b/V0 over steps, a/V0 and B (= B·V0/V0) as horizontal lines, phases shaded, and a
    red × on every step with V ≥ b (the barrier was infinite there; the loss used its cap)."""
    step, volume, budget_b = _f64(step), _f64(volume), _f64(budget_b)
    v0 = float(v0) if v0 else 1.0
    over_steps = _f64(over_steps)
    traces = [
        _t("scatter", x=step, y=volume / v0, name="V / V0 (volume kept)", mode="lines",
                   line=dict(color=LINE["V"], width=2)),
        _t("scatter", x=step, y=budget_b / v0, name="b / V0 (moving budget)", mode="lines",
                   line=dict(color=LINE["b"], width=2, dash="dash"), connectgaps=False),
    ]
    if len(over_steps) and len(step):
        traces.append(_t("scatter", x=over_steps, y=np.interp(over_steps, step, volume) / v0, mode="markers",
                                 name=f"V ≥ b ({len(over_steps)} steps)",
                                 marker=dict(symbol="x", size=7, color=LINE["over"])))
    shapes = phase_shapes(phase_spans)
    annotations = phase_annotations(phase_spans)
    if a is not None and budget_volume is not None:  # an L0 run has no budget: no levels, no wall
        level_shapes, level_notes = budget_levels(a / v0, budget_volume / v0)
        shapes += level_shapes
        annotations += level_notes
    if marker_step is not None:
        shapes.append(dict(type="line", xref="x", yref="y domain", x0=marker_step, x1=marker_step, y0=0, y1=1,
                           line=dict(color="#444", width=1, dash="dot")))
    layout = _base_layout("Volume V against the moving budget b", uirevision, shapes=shapes, annotations=annotations,
                          # autorange, not a range that grows with every step: a reader's zoom then
                          # survives the live updates (Plotly.react keeps it under the same uirevision)
                          xaxis=dict(title="training step", rangemode="tozero"),
                          yaxis=dict(title="fraction of V0", rangemode="tozero"), height=380)
    return _figure(traces, layout)


def schedule_figure(budget: float, kind: str, prune_epochs: int, *, k: float | None = None, tau: float = TAU,
                    margin: float = BARRIER_MARGIN, n: int = 201, uirevision: str | None = None) -> go.Figure:
    """The planned budget before a run: b(p)/V0 = (1 − π(p))(1 + τ) + π(p)·B over the prune epochs,
    with a/V0 and B as lines (what the live volume view will show, in units of V0)."""
    p = np.linspace(0.0, 1.0, n)
    b = np.array([budget_at(float(x), 1.0, budget, kind, k, tau) for x in p])
    a = barrier_start(1.0, budget, margin, tau)
    traces = [_t("scatter", x=p * prune_epochs, y=b, name=f"b / V0 ({kind} schedule)", mode="lines",
                 line=dict(color=LINE["b"], width=2, dash="dash"),
                 hovertemplate="prune epoch %{x:.2f}: b = %{y:.3f}·V0<extra></extra>")]
    shapes, annotations = budget_levels(a, budget)
    layout = _base_layout(f"The planned budget: b from (1 + τ)·V0 down to B·V0 = {budget:g}·V0 (pruning "
                          f"factor {1 / budget:.3g}×)", uirevision, shapes=shapes, annotations=annotations,
                          xaxis=dict(title="prune epoch", range=[0, prune_epochs]),
                          yaxis=dict(title="fraction of V0", range=[0, 1.05 + tau]), height=380)
    return _figure(traces, layout)


# ------------------------------------------------------------------------------------------------
# b. The barrier f(V, a, b)


def barrier_curve(a: float, b: float, v_lo: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(V, f(V, a, b)) sampled from v_lo up to just below the wall at b."""
    top = b - (b - a) * 1e-3
    V = np.linspace(min(v_lo, a), top, n)
    return V, np.array([barrier(v, a, b) for v in V])


@dataclass(frozen=True)
class BarrierWindow:
    """What a barrier panel shows, in the units of V, a and b: the curve under the plot's top, f at V,
    and the axes' ranges (a quarter of b − a left of min(V, a), a little right of max(b, V); the top at
    twice f(V), at least 5 and at most 1e6)."""
    V: np.ndarray
    f: np.ndarray
    f_now: float
    v_lo: float
    x_hi: float
    y_top: float


def barrier_window(V: float, a: float, b: float, n: int = 400) -> BarrierWindow:
    v_lo = min(V, a) - 0.25 * (b - a)
    Vs, fs = barrier_curve(a, b, v_lo, n)
    f_now = barrier(V, a, b)
    y_top = min(max(5.0, 2.0 * f_now) if math.isfinite(f_now) else 5.0, 1e6)
    keep = fs <= y_top * 1.05
    right = max(b, V)
    return BarrierWindow(Vs[keep], fs[keep], f_now, v_lo, right + 0.06 * (right - v_lo), y_top)


def barrier_figure(V: float, a: float, b: float, v0: float, *, step: int | None = None, n: int = 400,
                   uirevision: str | None = None) -> go.Figure:
    """f(V, a, b) for the given b (x in units of V0), with the current V as a point on it.

    f = 0 up to a, (V − a)²/((b − a)(b − V)) between, and +∞ from b on (drawn as a wall); a V at or
    past b is drawn on the wall at the top of the plot."""
    v0 = float(v0) if v0 else 1.0
    w = barrier_window(V, a, b, n)
    f_now, v_lo, y_top = w.f_now, w.v_lo, w.y_top
    traces = [_t("scatter", x=w.V / v0, y=w.f, mode="lines", name="f(V, a, b)",
                         line=dict(color="#6a3d9a", width=2.5))]
    x_now = V / v0
    if math.isfinite(f_now):
        traces.append(_t("scatter", x=[x_now], y=[f_now], mode="markers+text", name="current V",
                                 marker=dict(size=13, color=LINE["V"], line=dict(color="white", width=1)),
                                 text=[f"f = {f_now:.3g}"], textposition="top left"))
    else:
        traces.append(_t("scatter", x=[x_now], y=[y_top], mode="markers+text", name="current V (V ≥ b: f = +∞)",
                                 marker=dict(size=14, color=LINE["over"], symbol="triangle-up"),
                                 text=["V ≥ b: f = +∞ (loss uses the cap)"], textposition="bottom left"))
    x_hi = w.x_hi / v0
    shapes = [dict(type="line", xref="x", yref="y domain", x0=b / v0, x1=b / v0, y0=0, y1=1,
                   line=dict(color=LINE["b"], width=2)),
              dict(type="rect", xref="x", yref="y domain", x0=b / v0, x1=x_hi, y0=0, y1=1,
                   fillcolor=LINE["b"], opacity=0.08, line=dict(width=0)),
              dict(type="line", xref="x", yref="y domain", x0=a / v0, x1=a / v0, y0=0, y1=1,
                   line=dict(color=LINE["a"], width=1.5, dash="dot"))]
    annotations = [dict(x=b / v0, y=1, xref="x", yref="y domain", text="b: wall, f = ∞ ", showarrow=False,
                        xanchor="right", yanchor="top", font=dict(color=LINE["b"], size=11)),
                   dict(x=a / v0, y=0.9, xref="x", yref="y domain", text="a: f = 0 below ", showarrow=False,
                        xanchor="right", yanchor="top", font=dict(color=LINE["a"], size=11))]
    title = "Barrier f(V, a, b)" + (f" at step {step}" if step is not None else "")
    layout = _base_layout(title, uirevision, shapes=shapes, annotations=annotations, height=380,
                          xaxis=dict(title="V / V0", range=[v_lo / v0, x_hi]),
                          yaxis=dict(title="f (multiplies λ·L_S)", range=[0, y_top]))
    return _figure(traces, layout)


# ------------------------------------------------------------------------------------------------
# c. Gates: P(z > 0) histograms per layer and a channel × epoch heatmap


def histogram_counts(values, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of values on [0, 1] in `bins` equal bins (the last one includes 1)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, _ = np.histogram(np.clip(_f64(values), 0.0, 1.0), bins=edges)
    return counts, edges


def _grid_domains(n: int, cols: int, hgap: float = 0.04, vgap: float = 0.12) -> list[tuple[list, list]]:
    rows = max(1, math.ceil(n / cols))
    w = (1.0 - hgap * (cols - 1)) / cols
    h = (1.0 - vgap * (rows - 1)) / rows
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        x0 = c * (w + hgap)
        y1 = 1.0 - r * (h + vgap)
        out.append(([x0, x0 + w], [max(y1 - h, 0.0), y1]))
    return out


def gate_histograms_figure(layer_names: Sequence[str], prob_open: Sequence, *, bins: int = 20, cols: int = 3,
                           epoch: int | None = None, uirevision: str | None = None) -> go.Figure:
    """Small multiples: per layer, a histogram of its channels' P(z > 0) (counts on [0, 1])."""
    n = len(layer_names)
    cols = max(1, min(cols, n)) if n else 1
    rows = max(1, math.ceil(n / cols))
    traces, layout_axes, annotations = [], {}, []
    for i, ((xd, yd), name, p) in enumerate(zip(_grid_domains(n, cols), layer_names, prob_open)):
        counts, edges = histogram_counts(p, bins)
        centers = (edges[:-1] + edges[1:]) / 2
        k = "" if i == 0 else str(i + 1)
        alive = int(np.sum(_f64(p) > 0.5))
        traces.append(_t("bar", x=centers, y=counts.astype(np.float64), width=1.0 / bins, name=name, showlegend=False,
                             xaxis=f"x{k}", yaxis=f"y{k}",
                             marker=dict(color=np.where(centers < 0.5, "#bdbdbd", "#1f77b4").tolist()),
                             hovertemplate="P(z>0) ≈ %{x:.2f}: %{y} channels<extra>" + name + "</extra>"))
        layout_axes[f"xaxis{k}"] = dict(domain=xd, anchor=f"y{k}", range=[0, 1], tickvals=[0, 0.5, 1],
                                        tickfont=dict(size=9))
        layout_axes[f"yaxis{k}"] = dict(domain=yd, anchor=f"x{k}", rangemode="tozero", tickfont=dict(size=9))
        if i + cols >= n:  # the lowest panel of its column
            layout_axes[f"xaxis{k}"]["title"] = dict(text="P(z > 0)", font=dict(size=10))
        if i % cols == 0:
            layout_axes[f"yaxis{k}"]["title"] = dict(text="channels", font=dict(size=10))
        annotations.append(dict(text=f"{name} ({alive}/{len(p)} with P>½)", xref=f"x{k} domain", yref=f"y{k} domain",
                                x=0.5, y=1.0, showarrow=False, yanchor="bottom", font=dict(size=10)))
    title = "P(z > 0) per channel, by layer" + (f" (epoch {epoch})" if epoch is not None else "")
    layout = _base_layout(title, uirevision, annotations=annotations, bargap=0.05, showlegend=False,
                          height=max(260, 190 * rows + 60), **layout_axes)
    return _figure(traces, layout)


def death_epochs(epochs, test_gate_matrix) -> np.ndarray:
    """Per channel: the first epoch from which its test gate ẑ stays 0 (NaN if it is alive at the end)."""
    epochs = _f64(epochs)
    tg = _f64(test_gate_matrix)
    if tg.ndim != 2 or tg.shape[0] == 0:
        return np.zeros(0)
    dead = tg <= 0.0
    out = np.full(tg.shape[1], np.nan)
    for c in range(tg.shape[1]):
        col = dead[:, c]
        if col[-1]:
            alive_idx = np.flatnonzero(~col)
            first = alive_idx[-1] + 1 if len(alive_idx) else 0
            out[c] = epochs[first]
    return out


def channel_heatmap_figure(epochs, prob_open_matrix, *, layer: str, test_gate_matrix=None, order: str = "index",
                           uirevision: str | None = None) -> go.Figure:
    """Heatmap of P(z > 0): one row per channel of `layer`, one column per epoch; × marks the epoch a
    channel died (ẑ = 0 from then on). order = "index" or "death" (earliest deaths at the top)."""
    epochs = _f64(epochs)
    P = _f64(prob_open_matrix)
    channels = np.arange(P.shape[1]) if P.ndim == 2 else np.zeros(0, dtype=int)
    died = death_epochs(epochs, test_gate_matrix) if test_gate_matrix is not None else np.full(len(channels), np.nan)
    if order == "death" and len(channels):
        key = np.where(np.isnan(died), np.inf, died)
        channels = np.lexsort((-P[-1], key))
    labels = np.array([f"ch {c}" for c in channels], dtype=object)
    traces = [_t("heatmap", z=P[:, channels].T if P.ndim == 2 else P, x=epochs, y=labels, zmin=0, zmax=1,
                         colorscale="Viridis", colorbar=dict(title=dict(text="P(z>0)")),
                         hovertemplate="epoch %{x}, %{y}: P(z>0) = %{z:.3f}<extra></extra>")]
    if len(channels):
        d = died[channels]
        m = ~np.isnan(d)
        if m.any():
            traces.append(_t("scatter", x=d[m], y=labels[m], mode="markers", name="died (ẑ = 0 from here on)",
                                     marker=dict(symbol="x", color="#ff1744", size=8)))
    n_dead = int(np.sum(~np.isnan(died)))
    layout = _base_layout(f"{layer}: P(z > 0) per channel and epoch ({n_dead}/{len(channels)} channels died)",
                          uirevision, height=max(300, min(900, 14 * len(channels) + 120)),
                          xaxis=dict(title="epoch", dtick=1), yaxis=dict(title="channel", autorange="reversed",
                                                                          type="category"))
    return _figure(traces, layout)


# ------------------------------------------------------------------------------------------------
# d. Hard Concrete inverse CDF


def icdf_curve(log_alpha: float, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA,
               n: int = 401) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ε, g(log α, ε), s̄(ε)): the clipped gate and the stretched value before clipping."""
    eps = np.linspace(1e-6, 1 - 1e-6, n)
    g = icdf(torch.as_tensor(np.full(n, float(log_alpha))), torch.as_tensor(eps), beta, gamma, zeta).numpy()
    s = 1.0 / (1.0 + np.exp(-(np.log(eps) - np.log1p(-eps) + log_alpha) / beta))
    return eps, np.asarray(g, dtype=np.float64), s * (zeta - gamma) + gamma


def icdf_figure(log_alpha: float, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA, *,
                channels: Sequence[tuple[str, float]] = (), uirevision: str | None = None) -> go.Figure:
    """g(log α, ε) for the slider values (thick), the unclipped stretch s̄ (dashed), P(z=0) and
    P(z=1) as the flat parts at 0 and 1, and the curves of chosen real channels (thin)."""
    eps, g, s_bar = icdf_curve(log_alpha, beta, gamma, zeta)
    p0 = prob_zero(float(log_alpha), beta, gamma, zeta)
    p1 = prob_one(float(log_alpha), beta, gamma, zeta)
    zhat = test_gate(float(log_alpha), gamma, zeta)
    traces = [_t("scatter", x=eps, y=s_bar, mode="lines", name="s̄ (stretched, before clipping)",
                         line=dict(color="#9e9e9e", dash="dash", width=1.5)),
              _t("scatter", x=eps, y=g, mode="lines", name=f"g(log α = {log_alpha:.2f}, ε)",
                         line=dict(color="#6a3d9a", width=3))]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#17becf", "#8c564b", "#e377c2", "#bcbd22"]
    for i, (label, la) in enumerate(channels):
        _, gc, _ = icdf_curve(la, beta, gamma, zeta)
        traces.append(_t("scatter", x=eps, y=gc, mode="lines", name=f"{label} (log α = {la:.2f})",
                                 line=dict(color=palette[i % len(palette)], width=1.5)))
    shapes = [dict(type="rect", xref="x", yref="paper", x0=0, x1=p0, y0=0, y1=1, fillcolor="#9e9e9e",
                   opacity=0.12, line=dict(width=0)),
              dict(type="rect", xref="x", yref="paper", x0=1 - p1, x1=1, y0=0, y1=1, fillcolor="#4caf50",
                   opacity=0.12, line=dict(width=0)),
              dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=0, y1=0, line=dict(color="#444", width=1)),
              dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=1, y1=1, line=dict(color="#444", width=1))]
    annotations = [dict(x=p0 / 2, y=0.5, xref="x", yref="y", text=f"P(z=0)<br>{p0:.3f}", showarrow=False,
                        font=dict(size=11)),
                   dict(x=1 - p1 / 2, y=0.5, xref="x", yref="y", text=f"P(z=1)<br>{p1:.3f}", showarrow=False,
                        font=dict(size=11))]
    title = f"Hard Concrete inverse CDF: P(z=0) = {p0:.3f}, P(z=1) = {p1:.3f}, test gate ẑ = {zhat:.3f}"
    y_lo, y_hi = min(gamma, -0.05) - 0.05, max(zeta, 1.05) + 0.05
    layout = _base_layout(title, uirevision, shapes=shapes, annotations=annotations, height=400,
                          xaxis=dict(title="ε ~ U(0, 1)", range=[0, 1]),
                          yaxis=dict(title="z = g(log α, ε)", range=[y_lo, y_hi]))
    return _figure(traces, layout)


# ------------------------------------------------------------------------------------------------
# e. What survives: per-layer kept/total and mixed connectivity


def layer_table(layers: Sequence[dict], gates_at_epoch: dict) -> list[dict]:
    """One row per gated layer: channels kept (ẑ > 0) / total, and its share of the volume."""
    rows = []
    for layer in layers:
        name, total, area = layer["name"], int(layer["channels"]), int(layer.get("area", 1))
        g = gates_at_epoch.get(name)
        kept = int(np.sum(_f64(g["test_gate"]) > 0)) if g is not None else total
        rows.append({"layer": name, "kept": kept, "total": total, "kept %": round(100.0 * kept / max(total, 1), 1),
                     "map size": f"{layer.get('height', '?')}×{layer.get('width', '?')}",
                     "volume kept": kept * area, "volume at start": total * area})
    return rows


def kept_bars_figure(rows: Sequence[dict], uirevision: str | None = None) -> go.Figure:
    """Horizontal bars: kept and pruned channels per layer (from `layer_table` rows)."""
    names = [r["layer"] for r in rows][::-1]
    kept = _f64([r["kept"] for r in rows][::-1])
    pruned = _f64([r["total"] - r["kept"] for r in rows][::-1])
    traces = [_t("bar", y=names, x=kept, orientation="h", name="kept", marker=dict(color="#1f77b4")),
              _t("bar", y=names, x=pruned, orientation="h", name="pruned", marker=dict(color="#e0e0e0"))]
    layout = _base_layout("Channels kept per gated layer", uirevision, barmode="stack",
                          height=max(260, 24 * len(rows) + 120), xaxis=dict(title="channels"),
                          yaxis=dict(automargin=True))
    return _figure(traces, layout)


CONN_CODES = {0: "dead", 1: "alive, not used", 2: "read (R)", 3: "written (W)", 4: "kept in the stream",
              5: "identity block"}
CONN_COLORS = ["#fafafa", "#d9d9d9", "#1f77b4", "#ff7f0e", "#2ca02c", "#e7dff0"]


def connectivity_matrix(analysis: dict) -> tuple[np.ndarray, list[str], list[str]]:
    """The diagram as a matrix: rows = stream channels, columns = (stream | block R | block W | head).

    Cell codes (CONN_CODES): 0 dead, 1 alive but unused here, 2 read by the block (its R), 3 written
    by the block (its W), 4 kept in the stream, 5 the column of a block that became an identity.
    Returns (z, column labels, column kinds)."""
    streams = {s["id"]: s for s in analysis.get("streams", [])}
    height = max([s["width"] for s in streams.values()] + [analysis.get("head", {}).get("width", 0), 1])
    cols, labels, kinds = [], [], []

    def column(width, cells: dict[int, int]) -> np.ndarray:
        c = np.full(height, np.nan)
        c[:width] = 0
        for ch, code in cells.items():
            c[ch] = code
        return c

    def stream_column(s: dict) -> None:
        cells = {ch: 1 for ch in s["alive"]}
        cells.update({ch: 4 for ch in s["kept"]})
        cols.append(column(s["width"], cells))
        labels.append(f"<b>{s['name']}</b><br>stream<br>{len(s['kept'])}/{s['width']}")
        kinds.append("stream")

    shown = set()
    for b in analysis.get("blocks", []):
        s_in, s_out = streams[b["stream_in"]], streams[b["stream_out"]]
        if s_in["id"] not in shown:
            stream_column(s_in)
            shown.add(s_in["id"])
        ident = bool(b.get("removable"))
        inner = f"M {len(b['inner'])}/{b['inner_total']}"
        if ident:
            r = {ch: 5 for ch in range(s_in["width"])}
        else:
            r = {ch: 1 for ch in b.get("alive_in", [])}
            r.update({ch: 2 for ch in b["reads"]})
        cols.append(column(s_in["width"], r))
        labels.append(f"{b['name']}<br>R {len(b['reads'])}/{s_in['width']}")
        kinds.append("identity" if ident else "reads")
        if s_out["id"] not in shown:
            stream_column(s_out)
            shown.add(s_out["id"])
        if ident:
            w = {ch: 5 for ch in range(s_out["width"])}
        else:
            w = {ch: 3 for ch in b["writes"]}
        cols.append(column(s_out["width"], w))
        labels.append(f"{b['name']}<br>{'identity' if ident else inner}<br>W {len(b['writes'])}/{s_out['width']}")
        kinds.append("identity" if ident else "writes")
    head = analysis.get("head")
    if head:
        cols.append(column(head["width"], {ch: 2 for ch in head["reads"]}))
        labels.append(f"<b>head</b><br>reads<br>{len(head['reads'])}/{head['width']}")
        kinds.append("head")
    z = np.stack(cols, axis=1) if cols else np.zeros((height, 0))
    return z, labels, kinds


def connectivity_figure(analysis: dict, uirevision: str | None = None, title_suffix: str = "") -> go.Figure:
    """Mixed connectivity of the network as it stands (from bar_core.connectivity.analyze): one row per
    stream channel; per stream a column of its kept channels, per block the stream channels it reads
    (R, blue) and writes (W, orange) with its kept inner channels M in the label; blocks that became
    identities are a pale column pair; the last column is what the classifier head reads."""
    z, labels, kinds = connectivity_matrix(analysis)
    n = len(CONN_COLORS)
    scale = []
    for i, c in enumerate(CONN_COLORS):
        scale += [[i / n, c], [(i + 1) / n, c]]
    names = np.array([CONN_CODES.get(int(v), "") if np.isfinite(v) else "" for v in z.ravel()],
                     dtype=object).reshape(z.shape)
    traces = [_t("heatmap", z=z, x=list(range(z.shape[1])), y=np.arange(z.shape[0]), zmin=-0.5, zmax=n - 0.5,
                         colorscale=scale, showscale=False, xgap=2, ygap=0.5, customdata=names,
                         hovertemplate="column %{x}<br>channel %{y}: %{customdata}<extra></extra>")]
    for code in range(1, n):  # a legend for the colours
        traces.append(_t("scatter", x=[None], y=[None], mode="markers", name=CONN_CODES[code],
                                 marker=dict(symbol="square", size=12, color=CONN_COLORS[code],
                                             line=dict(color="#999", width=0.5))))
    n_id = sum(1 for b in analysis.get("blocks", []) if b.get("removable"))
    n_blocks = len(analysis.get("blocks", []))
    title = (f"Mixed connectivity{title_suffix}: {analysis.get('total_kept', '?')}/"
             f"{analysis.get('total_channels', '?')} channels kept, {n_id}/{n_blocks} blocks became identities")
    layout = _base_layout(title, uirevision, height=max(360, min(900, 5 * z.shape[0] + 260)),
                          xaxis=dict(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels,
                                     tickfont=dict(size=9), showgrid=False, zeroline=False, side="top"),
                          yaxis=dict(title="stream channel", autorange="reversed", showgrid=False, zeroline=False),
                          plot_bgcolor="white", legend=dict(orientation="h", y=-0.05, x=0))
    layout["margin"] = dict(l=60, r=20, t=130, b=40)
    return _figure(traces, layout)


# ------------------------------------------------------------------------------------------------
# f. Accuracy, loss terms and speed


def rolling_median(y, window: int = 25) -> np.ndarray:
    y = _f64(y)
    if len(y) < window or window < 2:
        return y
    pad = window // 2
    padded = np.pad(y, pad, mode="edge")
    from numpy.lib.stride_tricks import sliding_window_view
    return np.nanmedian(sliding_window_view(padded, window), axis=1)[:len(y)]


def training_figure(step, loss, loss_data, images_per_s, *, epoch_steps=(), test_acc=(), teacher_acc=None,
                    phase_spans: Sequence[tuple[str, int, int]] = (), uirevision: str | None = None) -> go.Figure:
    """Three stacked panels sharing the step axis: test accuracy per epoch (and the teacher's),
    the loss terms L_D and λ·f·L_S (= L − L_D, log scale), and training speed (images/s)."""
    step, loss, loss_data, ips = _f64(step), _f64(loss), _f64(loss_data), _f64(images_per_s)
    sparsity = np.clip(loss - loss_data, 0.0, None)
    sparsity = np.where(sparsity > 0, sparsity, np.nan)  # log axis: hide exact zeros (no pressure)
    doms = {"y": [0.70, 1.0], "y2": [0.36, 0.64], "y3": [0.0, 0.28]}
    traces = [_t("scatter", x=_f64(epoch_steps), y=_f64(test_acc), mode="lines+markers", name="test accuracy (ẑ)",
                         line=dict(color="#1f77b4"), xaxis="x", yaxis="y"),
              _t("scatter", x=step, y=loss_data, mode="lines", name="L_D (data / distillation)",
                         line=dict(color="#2ca02c", width=1.2), xaxis="x", yaxis="y2"),
              _t("scatter", x=step, y=sparsity, mode="lines", name="λ·f·L_S (budget term)",
                         line=dict(color="#d62728", width=1.2), xaxis="x", yaxis="y2"),
              _t("scatter", x=step, y=ips, mode="lines", name="images/s (per step)", line=dict(color="#c7c7c7", width=1),
                         xaxis="x", yaxis="y3"),
              _t("scatter", x=step, y=rolling_median(ips), mode="lines", name="images/s (rolling median)",
                         line=dict(color="#9467bd", width=2), xaxis="x", yaxis="y3")]
    shapes = []
    for yref in ("y", "y2", "y3"):
        shapes += phase_shapes(phase_spans, xref="x", yref=f"{yref} domain")
    if teacher_acc is not None and not (isinstance(teacher_acc, float) and math.isnan(teacher_acc)):
        shapes.append(dict(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=teacher_acc, y1=teacher_acc,
                           line=dict(color="#7f7f7f", dash="dot", width=1.5)))
    annotations = []
    if teacher_acc is not None and not (isinstance(teacher_acc, float) and math.isnan(teacher_acc)):
        annotations.append(dict(xref="x domain", yref="y", x=0, y=teacher_acc, showarrow=False, xanchor="left",
                                yanchor="bottom", text=f"teacher {100 * teacher_acc:.1f}%",
                                font=dict(size=11, color="#7f7f7f")))
    layout = _base_layout("Accuracy, loss terms and training speed", uirevision, shapes=shapes,
                          annotations=annotations, height=620,
                          xaxis=dict(title="training step", anchor="y3", rangemode="tozero"),  # zoom survives
                          yaxis=dict(domain=doms["y"], title="test accuracy", tickformat=".1%"),  # fits the data: 1 point shows
                          yaxis2=dict(domain=doms["y2"], title="loss (log)", type="log", anchor="x"),
                          yaxis3=dict(domain=doms["y3"], title="images/s", rangemode="tozero", anchor="x"),
                          legend=dict(orientation="h", y=-0.12, x=0))
    return _figure(traces, layout)
