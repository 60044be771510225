"""Hard Concrete: the gate's inverse CDF under sliders for its parameters, with real channels of the run."""
from __future__ import annotations

import numpy as np
import streamlit as st

from bar_app.views.common import Live, chart, remember, restore
from bar_core import figures
from bar_core.hard_concrete import BETA, GAMMA, ZETA, prob_one, prob_zero, test_gate
from bar_core.history import RunSnapshot

DEFAULTS = {"hc_log_alpha": 0.0, "hc_beta": BETA, "hc_gamma": GAMMA, "hc_zeta": ZETA}


def _reset() -> None:
    for k, v in DEFAULTS.items():
        st.session_state[k] = v


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    for k, v in DEFAULTS.items():
        restore(k)
        st.session_state.setdefault(k, v)
    c = st.columns(4)
    c[0].slider("log α (location)", -6.0, 6.0, step=0.05, key="hc_log_alpha")
    c[1].slider("β (temperature)", 0.05, 2.0, step=0.01, key="hc_beta")
    c[2].slider("γ (lower stretch)", -1.0, -0.01, step=0.01, key="hc_gamma")
    c[3].slider("ζ (upper stretch)", 1.01, 2.0, step=0.01, key="hc_zeta")
    remember(*DEFAULTS)
    la, beta = st.session_state["hc_log_alpha"], st.session_state["hc_beta"]
    gamma, zeta = st.session_state["hc_gamma"], st.session_state["hc_zeta"]
    channels = []
    if snap is not None and snap.gates:
        epoch, g = snap.gates[-1]
        layers = list(g)
        lkey, ckey = f"hc_layer_{ns}", f"hc_channels_{ns}"
        restore(lkey)
        restore(ckey)
        if lkey not in st.session_state:  # start on the layer holding the most undecided channel
            st.session_state[lkey] = figures.undecided_layer(g, layers)
        c1, c2 = st.columns([2, 3])
        layer = c1.selectbox(f"Real channels of this run (log α at epoch {epoch}): layer", layers, key=lkey)
        la_layer = np.asarray(g[layer]["log_alpha"], dtype=float)
        options = [f"ch {i}" for i in range(len(la_layer))]  # stable labels: log α moves every epoch
        if st.session_state.get(f"{ckey}__layer") != layer or ckey not in st.session_state:
            # the most open channel, the most undecided one (log α nearest 0) and the most closed one
            st.session_state[ckey] = [options[i] for i in figures.channel_picks(la_layer)]
            st.session_state[f"{ckey}__layer"] = layer
        chosen = c2.multiselect("channels", options, key=ckey, max_selections=8)
        remember(lkey, ckey)
        channels = [(f"{layer} · {o}", float(la_layer[options.index(o)])) for o in chosen]
    fig = figures.hard_concrete(snap, la, beta, gamma, zeta, channels=channels)
    chart(fig, "chart_icdf", snap)
    m = st.columns(4)
    m[0].metric("P(z = 0) (pruned)", f"{prob_zero(la, beta, gamma, zeta):.4f}")
    m[1].metric("P(z = 1) (fully on)", f"{prob_one(la, beta, gamma, zeta):.4f}")
    m[2].metric("P(z > 0)", f"{1 - prob_zero(la, beta, gamma, zeta):.4f}")
    m[3].metric("Test gate ẑ", f"{test_gate(la, gamma, zeta):.4f}")
    st.button("Reset to the defaults (β = 2/3, γ = −0.1, ζ = 1.1)", key="hc_reset", on_click=_reset)
