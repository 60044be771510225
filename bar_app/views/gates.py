"""Gates: per-layer histograms of P(z > 0) at an epoch, and one layer's channels over the epochs."""
from __future__ import annotations

import numpy as np
import streamlit as st

from bar_app.views.common import Live, chart, epoch_choice, memo, no_data, remember, restore
from bar_core import plots
from bar_core.history import RunSnapshot


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.gates:
        no_data("Per-layer histograms of P(z > 0)")
        return
    layers = [l["name"] for l in snap.layout.get("layers", [])] or list(snap.gates[-1][1])
    i = epoch_choice(snap, ns, "Epoch (0 = before pruning)", "gates_epoch")
    epoch, g = snap.gates[i]
    fig = memo(("hist", ns, len(snap.gates), i),
               lambda: plots.gate_histograms_figure(layers, [g[l]["prob_open"] for l in layers], epoch=epoch,
                                                    uirevision=ns))
    chart(fig, "chart_hist", snap)
    c1, c2 = st.columns([3, 2])
    restore(f"heat_layer_{ns}")
    restore(f"heat_order_{ns}")
    layer = c1.selectbox("Layer for the channel × epoch heatmap", layers, key=f"heat_layer_{ns}")
    order = c2.radio("Channel order", ["index", "death"], key=f"heat_order_{ns}", horizontal=True,
                     format_func=lambda o: {"index": "by index", "death": "by when it died"}[o])
    remember(f"heat_layer_{ns}", f"heat_order_{ns}")
    ep = np.array([e for e, _ in snap.gates], dtype=float)
    fig = memo(("heat", ns, len(snap.gates), layer, order),
               lambda: plots.channel_heatmap_figure(
                   ep, np.stack([gg[layer]["prob_open"] for _, gg in snap.gates]), layer=layer,
                   test_gate_matrix=np.stack([gg[layer]["test_gate"] for _, gg in snap.gates]), order=order,
                   uirevision=ns))
    chart(fig, "chart_heatmap", snap)
