"""Accuracy & speed: test accuracy per epoch, the loss terms and images/s per step (live through a feed)."""
from __future__ import annotations

import numpy as np

from bar_app import live_plot
from bar_app.views.common import Live, live_panel, no_data
from bar_core import figures
from bar_core.history import RunSnapshot


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.has_steps:
        no_data("Accuracy, the loss terms and training speed")
        return
    live_panel("chart_training", snap, live, lambda s: panel(s, ns))


def panel(snap: RunSnapshot, ns: str) -> tuple:
    series = figures.epoch_series(snap)
    fig = figures.training(snap, uirevision=ns, series=series)
    _, acc, teacher = series
    recent = snap.steps["images_per_s"][-50:]
    recent = recent[np.isfinite(recent)]
    metric = live_plot.metric
    return fig, [
        metric("Test accuracy (last epoch)", "—" if not len(acc) or np.isnan(acc[-1]) else f"{100 * acc[-1]:.2f}%"),
        metric("Teacher accuracy", "—" if teacher is None else f"{100 * teacher:.2f}%"),
        metric("Images/s (recent median)", f"{np.median(recent):,.0f}" if len(recent) else "—"),
        metric("Device / threads", f"{snap.layout.get('device', '?')} / {snap.layout.get('threads', '?')}")]
