"""A finished run as an animation: the volume against the moving budget, the barrier at that step and
the channels kept per layer, played together in the browser at a chosen speed.

One Plotly figure with frames (a snapshot in, a Figure out): plotly.js plays it with its own Play and
Pause buttons and a slider that steps through the frames, so playing costs the server nothing and the
downloaded HTML plays too. The gates are stored once an epoch, so the kept-channels panel moves at
each epoch's end; the volume and the barrier move at every frame.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from bar_core.barrier import TAU
from bar_core.figures import barrier_point, layer_names
from bar_core.history import RunSnapshot, downsample_indices
from bar_core.plots import LINE, _base_layout, _f64, _figure, _t, barrier_window, phase_annotations, phase_shapes

DEFAULT_FRAMES = 120
LINE_POINTS = 600  # of the volume and budget lines drawn up to each frame
PLAYBACK_SECONDS = (5, 10, 15, 30, 60)

# The volume over the whole width at the top; the barrier and the kept channels below it
_TOP, _BOTTOM = [0.62, 1.0], [0.0, 0.44]
_LEFT, _RIGHT = [0.0, 0.44], [0.6, 1.0]


def frame_rows(n_steps: int, frames: int = DEFAULT_FRAMES) -> np.ndarray:
    """Rows of the snapshot's steps shown as frames: evenly spaced, first and last included."""
    return downsample_indices(n_steps, max(2, frames))


def kept_per_epoch(snap: RunSnapshot) -> tuple[list[str], list[int], list[int], np.ndarray]:
    """(layers, channels per layer, the step each gate snapshot was taken at, kept channels (ẑ > 0) per
    snapshot and layer)."""
    layers = layer_names(snap)
    channels = {l["name"]: int(l["channels"]) for l in snap.layout.get("layers", [])}
    at_step = {int(e["epoch"]): int(e.get("step") or 0) for e in snap.epochs if e.get("epoch") is not None}
    steps, kept = [], []
    for epoch, g in snap.gates:
        steps.append(at_step.get(int(epoch), 0))
        kept.append([int(np.sum(_f64(g[l]["test_gate"]) > 0)) if l in g else channels.get(l, 0) for l in layers])
    total = [channels.get(l, len(snap.gates[-1][1][l]["test_gate"]) if snap.gates else 0) for l in layers]
    return layers, total, steps, np.asarray(kept, dtype=np.int64).reshape(len(steps), len(layers))


def death_steps(layers: list[str], gate_steps: list[int], kept: np.ndarray) -> dict[str, int]:
    """Layer → the step of the first gate snapshot where it has no channel left (and keeps none after)."""
    out = {}
    for j, name in enumerate(layers):
        dead = kept[:, j] == 0
        if dead.any() and dead[-1]:
            first = len(dead) - int(np.argmin(dead[::-1])) if not dead.all() else 0
            out[name] = gate_steps[first]
    return out


def _names(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _barrier_traces(snap: RunSnapshot, step: int, v0: float) -> tuple[list[dict], dict, str]:
    p = barrier_point(snap, step)
    a, b, V = p.a / v0, p.b / v0, p.V / v0
    w = barrier_window(V, a, b, n=160)
    f, v_lo, x_hi, y_top = w.f_now, w.v_lo, w.x_hi, w.y_top
    over = not math.isfinite(f)
    traces = [dict(x=w.V, y=w.f),
              dict(x=[V], y=[y_top if over else f],
                   marker=dict(size=12, color=LINE["over"] if over else LINE["V"],
                               symbol="triangle-up" if over else "circle")),
              dict(x=[b, b], y=[0, y_top])]
    axes = {"xaxis2.range": [v_lo, x_hi], "yaxis2.range": [0, y_top]}
    state = "f = +∞ (V ≥ b)" if over else f"f = {f:.3g}"
    return traces, axes, state


def replay_figure(snap: RunSnapshot, playback_seconds: float = 15.0, frames: int = DEFAULT_FRAMES,
                  uirevision: str | None = None) -> go.Figure | None:
    """The run played over `playback_seconds` in at most `frames` frames (None without steps or V0)."""
    if not snap.has_steps or not snap.v0:
        return None
    s, v0 = snap.steps, float(snap.v0)
    step, vol, bud = _f64(s["step"]), _f64(s["volume"]) / v0, _f64(s["budget_b"]) / v0
    phase = s["phase"]
    rows = frame_rows(len(step), frames)
    line_rows = downsample_indices(len(step), LINE_POINTS)
    layers, total, gate_steps, kept = kept_per_epoch(snap)
    deaths = death_steps(layers, gate_steps, kept) if len(gate_steps) else {}
    names = layers[::-1]  # the first layer at the top

    def frame_parts(r: int) -> tuple[list[dict], dict]:
        st = step[r]
        upto = line_rows[line_rows <= r]
        if not len(upto) or upto[-1] != r:
            upto = np.append(upto, r)
        curve, axes, f_text = _barrier_traces(snap, int(st), v0)
        g = max([i for i, gs in enumerate(gate_steps) if gs <= st + 1], default=None)  # gs: steps done
        k = kept[g] if g is not None else np.asarray(total)
        dead_now = [n for n, d in deaths.items() if d <= st + 1]
        pruned = np.asarray(total) - k
        data = [dict(x=step[upto], y=vol[upto]), dict(x=step[upto], y=bud[upto]), dict(x=[st], y=[vol[r]]),
                *curve,
                dict(x=_f64(k[::-1]), y=names),
                dict(x=_f64(pruned[::-1]), y=names,
                     marker=dict(color=[LINE["over"] if kk == 0 else "#e0e0e0" for kk in k[::-1]]))]
        b_text = f" · b/V0 {bud[r]:.3f}" if np.isfinite(bud[r]) else ""
        title = (f"Step {int(st)} ({phase[r]}, epoch {int(s['epoch'][r])}) · V/V0 {vol[r]:.3f}{b_text} · {f_text}"
                 + (f" · no channel left in {_names(dead_now)}" if dead_now else ""))
        return data, {"title.text": title, **axes}

    first_data, first_layout = frame_parts(int(rows[0]))
    styles = [
        dict(mode="lines", name="V / V0", line=dict(color=LINE["V"], width=2), xaxis="x", yaxis="y"),
        dict(mode="lines", name="b / V0", line=dict(color=LINE["b"], width=2, dash="dash"), xaxis="x", yaxis="y",
             connectgaps=False),
        dict(mode="markers", name="now", showlegend=False, marker=dict(size=10, color=LINE["V"]), xaxis="x", yaxis="y"),
        dict(mode="lines", name="f(V, a, b)", line=dict(color="#6a3d9a", width=2.5), xaxis="x2", yaxis="y2"),
        dict(mode="markers", name="V on the barrier", showlegend=False, xaxis="x2", yaxis="y2"),
        dict(mode="lines", name="wall at b", line=dict(color=LINE["b"], width=2), xaxis="x2", yaxis="y2",
             showlegend=False),
        dict(type="bar", orientation="h", name="kept channels", marker=dict(color=LINE["V"]), xaxis="x3", yaxis="y3"),
        dict(type="bar", orientation="h", name="pruned (red: the layer is gone)", xaxis="x3", yaxis="y3"),
    ]
    ghost = [_t("scatter", x=step[line_rows], y=vol[line_rows], mode="lines", hoverinfo="skip", showlegend=False,
                line=dict(color=LINE["V"], width=1), opacity=0.25, xaxis="x", yaxis="y"),
             _t("scatter", x=step[line_rows], y=bud[line_rows], mode="lines", hoverinfo="skip", showlegend=False,
                line=dict(color=LINE["b"], width=1, dash="dash"), opacity=0.25, xaxis="x", yaxis="y",
                connectgaps=False)]
    moving = [{"type": "scatter", **style, **part} for style, part in zip(styles, first_data)]
    moving_ids = list(range(len(ghost), len(ghost) + len(moving)))
    duration = max(20, int(1000 * playback_seconds / max(len(rows), 1)))
    play = {"frame": {"duration": duration, "redraw": True}, "transition": {"duration": 0}, "fromcurrent": True,
            "mode": "immediate"}
    still = {"frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}, "mode": "immediate"}
    frame_list, slider_steps = [], []
    label_every = max(1, len(rows) // 8)
    for i, r in enumerate(rows):
        data, lay = frame_parts(int(r)) if i else (first_data, first_layout)
        name = str(int(step[r]))
        frame_list.append({"name": name, "traces": moving_ids,
                           "data": [{"type": t["type"], **d} for t, d in zip(moving, data)],
                           "layout": {"title": {"text": lay["title.text"]}, "xaxis2": {"range": lay["xaxis2.range"]},
                                      "yaxis2": {"range": lay["yaxis2.range"]}}})
        slider_steps.append(dict(method="animate", args=[[name], still], value=name,
                                 label=name if i % label_every == 0 or i == len(rows) - 1 else ""))
    lay = snap.layout
    shapes = phase_shapes(snap.phase_spans, xref="x", yref="y domain")
    shapes.append(dict(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=lay["budget_volume"] / v0,
                       y1=lay["budget_volume"] / v0, line=dict(color=LINE["budget"], width=1)))
    x_max = max(gate_total for gate_total in total) if total else 1
    tau = float(snap.config.get("tau", TAU))
    layout = _base_layout(
        first_layout["title.text"], uirevision, height=640, margin=dict(l=60, r=20, t=60, b=150),
        shapes=shapes, annotations=phase_annotations(snap.phase_spans, xref="x", yref="y domain"), barmode="stack", legend=dict(orientation="h", y=-0.2, yanchor="top", x=0),
        xaxis=dict(domain=[0, 1], anchor="y", title="training step", range=[0, float(step[-1]) * 1.01 or 1]),
        yaxis=dict(domain=_TOP, anchor="x", title="fraction of V0", range=[0, 1.05 + tau]),
        xaxis2=dict(domain=_LEFT, anchor="y2", title="V / V0", range=first_layout["xaxis2.range"]),
        yaxis2=dict(domain=_BOTTOM, anchor="x2", title="f (barrier)", range=first_layout["yaxis2.range"]),
        xaxis3=dict(domain=_RIGHT, anchor="y3", title="channels (ẑ > 0 at the epoch's end)", range=[0, x_max * 1.02]),
        yaxis3=dict(domain=_BOTTOM, anchor="x3", automargin=True, tickfont=dict(size=9)),
        updatemenus=[dict(type="buttons", direction="left", x=0, y=-0.2, xanchor="left", yanchor="top",
                          pad=dict(t=40, r=10), showactive=False,
                          buttons=[dict(label="▶ Play", method="animate", args=[None, play]),
                                   dict(label="❚❚ Pause", method="animate", args=[[None], still])])],
        sliders=[dict(active=0, steps=slider_steps, x=0.2, len=0.8, y=-0.2, yanchor="top", pad=dict(t=30),
                      currentvalue=dict(prefix="step ", font=dict(size=12)), transition=dict(duration=0))])
    # the length of the playback, for the reader and the tests (plotly keeps `meta` as it is)
    layout["meta"] = {"playback_seconds": float(playback_seconds), "frame_ms": duration, "frames": len(rows),
                       "deaths": deaths}
    return _figure([*ghost, *moving], layout, frames=frame_list)
