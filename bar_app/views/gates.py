"""Gates: per-layer histograms of P(z > 0) at an epoch, and one layer's channels over the epochs."""
from __future__ import annotations

import streamlit as st

from bar_app.views.common import Live, chart, epoch_choice, memo, no_data, remember, restore
from bar_core import figures
from bar_core.history import RunSnapshot


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.gates:
        no_data("Per-layer histograms of P(z > 0)")
        return
    layers = figures.layer_names(snap)
    i = epoch_choice(snap, ns, "Epoch (0 = before pruning)", "gates_epoch")
    fig = memo(("hist", ns, len(snap.gates), i), lambda: figures.gate_histograms(snap, i, uirevision=ns))
    chart(fig, "chart_hist", snap)
    c1, c2 = st.columns([3, 2])
    restore(f"heat_layer_{ns}")
    restore(f"heat_order_{ns}")
    layer = c1.selectbox("Layer for the channel × epoch heatmap", layers, key=f"heat_layer_{ns}")
    order = c2.radio("Channel order", ["index", "death"], key=f"heat_order_{ns}", horizontal=True,
                     format_func=lambda o: {"index": "by index", "death": "by when it died"}[o])
    remember(f"heat_layer_{ns}", f"heat_order_{ns}")
    fig = memo(("heat", ns, len(snap.gates), layer, order),
               lambda: figures.channel_heatmap(snap, layer, order, uirevision=ns))
    chart(fig, "chart_heatmap", snap)
