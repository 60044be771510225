"""Accuracy & speed: test accuracy per epoch, the loss terms and images/s per step (live through a feed)."""
from __future__ import annotations

import numpy as np

from bar_app import live_plot
from bar_app.views.common import Live, live_panel, no_data
from bar_core import plots
from bar_core.history import RunSnapshot


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.has_steps:
        no_data("Accuracy, the loss terms and training speed")
        return
    live_panel("chart_training", snap, live, lambda s: panel(s, ns))


def panel(snap: RunSnapshot, ns: str) -> tuple:
    s = snap.steps
    ep_steps = np.array([e.get("step") or 0 for e in snap.epochs], dtype=float)
    acc = np.array([np.nan if e.get("test_acc") is None else e["test_acc"] for e in snap.epochs], dtype=float)
    teacher = next((e.get("teacher_acc") for e in reversed(snap.epochs) if e.get("teacher_acc") is not None), None)
    fig = plots.training_figure(s["step"], s["loss"], s["loss_data"], s["images_per_s"], epoch_steps=ep_steps,
                                test_acc=acc, teacher_acc=teacher, phase_spans=snap.phase_spans, uirevision=ns)
    recent = s["images_per_s"][-50:]
    recent = recent[np.isfinite(recent)]
    metric = live_plot.metric
    return fig, [
        metric("Test accuracy (last epoch)", "—" if not len(acc) or np.isnan(acc[-1]) else f"{100 * acc[-1]:.2f}%"),
        metric("Teacher accuracy", "—" if teacher is None else f"{100 * teacher:.2f}%"),
        metric("Images/s (recent median)", f"{np.median(recent):,.0f}" if len(recent) else "—"),
        metric("Device / threads", f"{snap.layout.get('device', '?')} / {snap.layout.get('threads', '?')}")]
