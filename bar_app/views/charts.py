"""The six views of a run (live or replayed), drawn from a RunSnapshot, their picker and teaching notes.

Figures come from the pure builders in bar_app/plots.py; views that change only once per epoch are
memoised per (run, epochs seen, choices) so a live redraw rebuilds only what moved. Every chart has
a fixed key. Sliders that look back in time follow the latest value until the user moves them.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

from bar_app import live_feed, live_plot, plots
from bar_app.views import connectivity as conn_view
from bar_app.views import explain
from bar_core.barrier import MARGIN, SCHEDULES, TAU
from bar_core.hard_concrete import BETA, GAMMA, ZETA, prob_one, prob_zero, test_gate
from bar_core.history import RunSnapshot
from bar_core.job import Job

TABS = ["Volume & budget", "Barrier", "Gates", "Hard Concrete", "Connectivity", "Accuracy & speed"]
MEMO_SIZE = 48


def run_namespace(snap: RunSnapshot | None) -> str:
    src = "none" if snap is None else f"{snap.source}|{snap.run_dir}"
    return hashlib.md5(src.encode()).hexdigest()[:8]


def _memo(key: tuple, build):
    memo = st.session_state.setdefault("_fig_memo", {})
    if key not in memo:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = build()
    return memo[key]


def _chart(fig, key: str) -> None:
    live_plot.chart(fig, key)


@dataclass(frozen=True)
class Live:
    """A running job whose panels update through feeds (bar_app/live_feed.py), every `period` seconds."""
    job: Job
    period: float

    def version(self) -> tuple:
        return self.job.buffer.version, self.job.state


def live_panel(key: str, snap: RunSnapshot, live: Live | None, draw: Callable[[RunSnapshot], tuple]) -> None:
    """A chart and its metric row, `draw(snapshot) -> (figure, metrics)`, drawn from `snap`; for a live
    job also published as a feed that draws them again from the job's newest snapshot (in the feed's
    worker thread: `draw` must not call Streamlit)."""
    fig, metrics = draw(snap)
    feed = None
    if live is None and f"_feed_{key}" in st.session_state:
        live_feed.FEEDS.withdraw(st.session_state[f"_feed_{key}"])
    if live is not None:
        def build() -> dict:
            t0 = time.perf_counter()
            f, m = draw(live.job.snapshot())
            out = live_plot.payload(f, metrics=m)
            out["caption"] = f"live update drawn in {1000 * (time.perf_counter() - t0):.0f} ms on the server"
            return out
        feed = publish_feed(key, live, build)
    live_plot.panel(key, fig, metrics=metrics, feed=feed)


def withdraw_feeds() -> None:
    """This session's page draws nothing live: the server forgets its feeds (and the job they hold)."""
    tokens = [v for k, v in st.session_state.items() if str(k).startswith("_feed_")]
    if tokens:
        live_feed.FEEDS.withdraw(*tokens)


def publish_feed(key: str, live: Live, build: Callable[[], dict]) -> dict:
    """Publish this session's feed for `key` (one token per session and key, kept across reruns);
    returns what the panel polls: URL, token, the version the page is drawn at, and the period."""
    token = st.session_state.setdefault(f"_feed_{key}", live_feed.FEEDS.new_token())
    url, version = live_feed.FEEDS.publish(token, live.version, build)
    return {"url": url, "token": token, "version": version, "period": live.period}


def _restore(key: str) -> None:
    """Streamlit forgets a widget's value when it is not drawn (another view was chosen); bring it back."""
    keep = f"_keep_{key}"
    if key not in st.session_state and keep in st.session_state:
        st.session_state[key] = st.session_state[keep]


def _remember(*keys: str) -> None:
    for key in keys:
        if key in st.session_state:
            st.session_state[f"_keep_{key}"] = st.session_state[key]


def _follow_value(key: str, lo, hi, options=None):
    """Keep st.session_state[key] at the latest value while 'following', else clamp it into range."""
    _restore(key)
    follow_key = f"{key}__follow"
    follow = st.session_state.get(follow_key, True)
    cur = st.session_state.get(key)
    if options is not None:
        if follow or cur not in options:
            st.session_state[key] = options[-1]
    elif follow or cur is None or not (lo <= cur <= hi):
        st.session_state[key] = hi if follow or cur is None else min(max(cur, lo), hi)
    return follow_key


def _stop_following(follow_key: str) -> None:
    st.session_state[follow_key] = False


def _follow_again(follow_key: str) -> None:
    st.session_state[follow_key] = True


def _look_back(key: str) -> None:
    """Stop following; the slider that appears starts at the latest step and its range is frozen there."""
    st.session_state[f"{key}__follow"] = False
    for k in (key, f"_keep_{key}", f"{key}__hi"):
        st.session_state.pop(k, None)


def render_view_picker() -> str:
    """The row that picks one of the six views (returns its label). A segmented control outside the
    live fragment, not st.tabs: a page holding st.tabs costs the browser 0.02-0.03 of a core more at a
    1 s refresh wherever the tabs sit (measured), and on a 2-core laptop that is taken from training."""
    if st.session_state.get("view_tabs") not in TABS:
        st.session_state["view_tabs"] = TABS[0]
    st.segmented_control("View", TABS, key="view_tabs", required=True, label_visibility="collapsed",
                         width="stretch")
    return st.session_state["view_tabs"]


def render_explanation(label: str) -> None:
    """The chosen view's teaching note, collapsed (outside the live fragment: not redrawn every second)."""
    title, text = EXPLANATIONS[label]
    with st.expander(f"What am I looking at? — {title}"):
        st.markdown(text)


def render_view(label: str, snap: RunSnapshot | None, live: Live | None = None) -> None:
    """The chosen view's live part. Only that one is computed and sent: a live redraw costs one view,
    not six, on the server and in the browser, which share the CPU with training. With `live`, the
    views that move at every step (volume, barrier, training) update through feeds."""
    try:
        if label in STEP_VIEWS:
            VIEWS[label](snap, run_namespace(snap), live)
        else:
            VIEWS[label](snap, run_namespace(snap))
    except Exception as exc:  # noqa: BLE001 - one broken view must not take the page down
        st.error(f"This view could not be drawn: {type(exc).__name__}: {exc}".splitlines()[0])


def _no_data(what: str) -> None:
    st.info(f"{what} appears here once a run is training or a past run is opened.")


# ---- a. volume ---------------------------------------------------------------------------------
def volume_view(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.has_steps or not snap.v0:
        _no_data("The volume V against the budget b")
        _planned_schedule(snap, ns)
        return
    live_panel("chart_volume", snap, live, lambda s: volume_panel(s, ns))


def volume_panel(snap: RunSnapshot, ns: str) -> tuple:
    s, lay = snap.steps, snap.layout
    fig = plots.volume_figure(s["step"], s["volume"], s["budget_b"], v0=lay["v0"], a=lay["a"],
                              budget_volume=lay["budget_volume"], phase_spans=snap.phase_spans,
                              over_steps=snap.over_budget_steps, uirevision=ns)
    v0 = lay["v0"]
    b_last = s["budget_b"][np.isfinite(s["budget_b"])]
    n_over = len(snap.over_budget_steps) if snap.summary is None else snap.summary.get("steps_over_budget", 0)
    metric = live_plot.metric
    return fig, [metric("V / V0 now", f"{s['volume'][-1] / v0:.4f}"),
                 metric("b / V0 now", f"{b_last[-1] / v0:.4f}" if len(b_last) else "—", help="the moving budget"),
                 metric("Target B", f"{lay['budget_volume'] / v0:.4f}", f"{v0 / lay['budget_volume']:.3g}× pruning"),
                 metric("Steps with V ≥ b", f"{n_over}")]


def _planned_schedule(snap: RunSnapshot | None, ns: str) -> None:
    """Before any step: the budget b that this run (or the set-up in the sidebar) will follow."""
    cfg = snap.config if snap is not None and snap.config else {
        "budget": st.session_state.get("cfg_budget"), "schedule": st.session_state.get("cfg_schedule"),
        "prune_epochs": st.session_state.get("cfg_prune_epochs")}
    budget, kind, epochs = cfg.get("budget"), cfg.get("schedule"), cfg.get("prune_epochs")
    try:
        ok = 0 < float(budget) <= 1 and kind in SCHEDULES and int(epochs) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        st.caption("The planned budget schedule appears here for a valid budget and schedule with at least one prune epoch.")
        return
    _chart(plots.schedule_figure(float(budget), kind, int(epochs), k=cfg.get("schedule_k"),
                                 tau=float(cfg.get("tau", TAU)), margin=float(cfg.get("margin", MARGIN)),
                                 uirevision=ns), "chart_schedule")


# ---- b. barrier --------------------------------------------------------------------------------
def _prune_rows(snap: RunSnapshot) -> np.ndarray:
    s = snap.steps
    return (np.flatnonzero((s["phase"] == "prune") & np.isfinite(s["budget_b"])) if snap.has_steps
            else np.zeros(0, int))


def barrier_view(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.v0:
        _no_data("The barrier curve with the network's volume on it")
        return
    lay, s = snap.layout, snap.steps
    v0, a = float(lay["v0"]), float(lay["a"])
    prune = _prune_rows(snap)
    if len(prune) == 0:
        tau = float(snap.config.get("tau", TAU))
        st.caption("Pruning has not started: the curve at the starting budget b = (1 + τ)·V0, the volume at V0.")
        _chart(plots.barrier_figure(v0, a, (1 + tau) * v0, v0, uirevision=ns), "chart_barrier")
        return
    pstep = s["step"][prune]
    lo, hi = int(pstep[0]), int(pstep[-1])
    key = f"barrier_step_{ns}"
    follow_key, hi_key = f"{key}__follow", f"{key}__hi"
    # A slider's identity includes its range: while the user looks back, freeze the range so the
    # slider is not re-created under their pointer every second as new steps arrive.
    if st.session_state.get(follow_key, True) or st.session_state.get(hi_key) is None:
        st.session_state[hi_key] = hi
    else:
        hi = min(hi, st.session_state[hi_key])
    _follow_value(key, lo, hi)
    following = st.session_state.get(follow_key, True)
    if live is not None and following:
        # The point follows the training through the feed; a slider here would show the step of the
        # last page run, not the one drawn.
        st.button("Look back at an earlier step", key=f"{key}_lookback", on_click=_look_back, args=(key,),
                  help="Stops following the training: a slider picks the step to show.")
    elif hi > lo:
        st.slider("Step (drag to look back; the point and the curve show that moment)", lo, hi, key=key,
                  on_change=_stop_following, args=(follow_key,))
        _remember(key)
    if not following:
        st.button("Follow the latest step", key=f"{key}_followbtn", on_click=_follow_again, args=(follow_key,))
    chosen = None if following else int(st.session_state.get(key, hi))
    # a step picked by the reader does not move: nothing to poll for
    live_panel("chart_barrier", snap, live if following else None, lambda sn: barrier_panel(sn, ns, chosen))


def barrier_panel(snap: RunSnapshot, ns: str, chosen: int | None) -> tuple:
    """The barrier at prune step `chosen` (None: the latest one)."""
    lay, s = snap.layout, snap.steps
    v0, a = float(lay["v0"]), float(lay["a"])
    prune = _prune_rows(snap)
    pstep = s["step"][prune]
    j = prune[-1] if chosen is None else prune[
        min(max(int(np.searchsorted(pstep, chosen, side="right")) - 1, 0), len(prune) - 1)]
    V, b, f = float(s["volume"][j]), float(s["budget_b"][j]), float(s["barrier_f"][j])
    a_j = float(s["barrier_a"][j]) if math.isfinite(s["barrier_a"][j]) else a
    fig = plots.barrier_figure(V, a_j, b, v0, step=int(s["step"][j]), uirevision=ns)
    metric = live_plot.metric
    return fig, [metric("V / V0", f"{V / v0:.4f}"), metric("b / V0", f"{b / v0:.4f}"),
                 metric("a / V0", f"{a_j / v0:.4f}"), metric("f (as used, capped)", f"{f:.3g}")]


# ---- c. gates ----------------------------------------------------------------------------------
def _epoch_choice(snap: RunSnapshot, ns: str, label: str, key_name: str) -> int:
    epochs = [e for e, _ in snap.gates]
    key = f"{key_name}_{ns}"
    follow_key = _follow_value(key, None, None, options=epochs)
    if len(epochs) > 1:
        st.select_slider(label, options=epochs, key=key, on_change=_stop_following, args=(follow_key,))
        _remember(key)
        if not st.session_state.get(follow_key, True):
            st.button("Follow the latest epoch", key=f"{key}_followbtn", on_click=_follow_again, args=(follow_key,))
    return epochs.index(st.session_state.get(key, epochs[-1]))


def gates_view(snap: RunSnapshot | None, ns: str) -> None:
    if snap is None or not snap.gates:
        _no_data("Per-layer histograms of P(z > 0)")
        return
    layers = [l["name"] for l in snap.layout.get("layers", [])] or list(snap.gates[-1][1])
    i = _epoch_choice(snap, ns, "Epoch (0 = before pruning)", "gates_epoch")
    epoch, g = snap.gates[i]
    fig = _memo(("hist", ns, len(snap.gates), i),
                lambda: plots.gate_histograms_figure(layers, [g[l]["prob_open"] for l in layers], epoch=epoch,
                                                     uirevision=ns))
    _chart(fig, "chart_hist")
    c1, c2 = st.columns([3, 2])
    _restore(f"heat_layer_{ns}")
    _restore(f"heat_order_{ns}")
    layer = c1.selectbox("Layer for the channel × epoch heatmap", layers, key=f"heat_layer_{ns}")
    order = c2.radio("Channel order", ["index", "death"], key=f"heat_order_{ns}", horizontal=True,
                     format_func=lambda o: {"index": "by index", "death": "by when it died"}[o])
    _remember(f"heat_layer_{ns}", f"heat_order_{ns}")
    ep = np.array([e for e, _ in snap.gates], dtype=float)
    fig = _memo(("heat", ns, len(snap.gates), layer, order),
                lambda: plots.channel_heatmap_figure(
                    ep, np.stack([gg[layer]["prob_open"] for _, gg in snap.gates]), layer=layer,
                    test_gate_matrix=np.stack([gg[layer]["test_gate"] for _, gg in snap.gates]), order=order,
                    uirevision=ns))
    _chart(fig, "chart_heatmap")


# ---- d. Hard Concrete ----------------------------------------------------------------------------
HC_DEFAULTS = {"hc_log_alpha": 0.0, "hc_beta": BETA, "hc_gamma": GAMMA, "hc_zeta": ZETA}


def _reset_hc() -> None:
    for k, v in HC_DEFAULTS.items():
        st.session_state[k] = v


def hard_concrete_view(snap: RunSnapshot | None, ns: str) -> None:
    for k, v in HC_DEFAULTS.items():
        _restore(k)
        st.session_state.setdefault(k, v)
    c = st.columns(4)
    c[0].slider("log α (location)", -6.0, 6.0, step=0.05, key="hc_log_alpha")
    c[1].slider("β (temperature)", 0.05, 2.0, step=0.01, key="hc_beta")
    c[2].slider("γ (lower stretch)", -1.0, -0.01, step=0.01, key="hc_gamma")
    c[3].slider("ζ (upper stretch)", 1.01, 2.0, step=0.01, key="hc_zeta")
    _remember(*HC_DEFAULTS)
    la, beta = st.session_state["hc_log_alpha"], st.session_state["hc_beta"]
    gamma, zeta = st.session_state["hc_gamma"], st.session_state["hc_zeta"]
    channels = []
    if snap is not None and snap.gates:
        epoch, g = snap.gates[-1]
        layers = list(g)
        lkey, ckey = f"hc_layer_{ns}", f"hc_channels_{ns}"
        _restore(lkey)
        _restore(ckey)
        if lkey not in st.session_state:  # start on the layer holding the most undecided channel
            st.session_state[lkey] = min(layers, key=lambda l: float(np.min(np.abs(g[l]["log_alpha"]))))
        c1, c2 = st.columns([2, 3])
        layer = c1.selectbox(f"Real channels of this run (log α at epoch {epoch}): layer", layers, key=lkey)
        la_layer = np.asarray(g[layer]["log_alpha"], dtype=float)
        options = [f"ch {i}" for i in range(len(la_layer))]  # stable labels: log α moves every epoch
        if st.session_state.get(f"{ckey}__layer") != layer or ckey not in st.session_state:
            # the most open channel, the most undecided one (log α nearest 0) and the most closed one
            picks = [int(np.argmax(la_layer)), int(np.argmin(np.abs(la_layer))), int(np.argmin(la_layer))]
            st.session_state[ckey] = [options[i] for i in dict.fromkeys(picks)]
            st.session_state[f"{ckey}__layer"] = layer
        chosen = c2.multiselect("channels", options, key=ckey, max_selections=8)
        _remember(lkey, ckey)
        channels = [(f"{layer} · {o}", float(la_layer[options.index(o)])) for o in chosen]
    fig = plots.icdf_figure(la, beta, gamma, zeta, channels=channels, uirevision="hc")
    _chart(fig, "chart_icdf")
    m = st.columns(4)
    m[0].metric("P(z = 0) (pruned)", f"{prob_zero(la, beta, gamma, zeta):.4f}")
    m[1].metric("P(z = 1) (fully on)", f"{prob_one(la, beta, gamma, zeta):.4f}")
    m[2].metric("P(z > 0)", f"{1 - prob_zero(la, beta, gamma, zeta):.4f}")
    m[3].metric("Test gate ẑ", f"{test_gate(la, gamma, zeta):.4f}")
    st.button("Reset to the defaults (β = 2/3, γ = −0.1, ζ = 1.1)", key="hc_reset", on_click=_reset_hc)


# ---- e. connectivity -----------------------------------------------------------------------------
def connectivity_view(snap: RunSnapshot | None, ns: str) -> None:
    if snap is None or not snap.gates:
        _no_data("The network as it stands")
        return
    i = _epoch_choice(snap, ns, "Epoch (the network as it stood then)", "conn_epoch")
    epoch, g = snap.gates[i]
    layers = snap.layout.get("layers") or [{"name": n, "channels": len(v["test_gate"]), "area": 1}
                                           for n, v in g.items()]
    conn_view.render(snap, ns, epoch, g, layers, i, _memo, _chart)


# ---- f. accuracy, loss terms, speed --------------------------------------------------------------
def training_view(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.has_steps:
        _no_data("Accuracy, the loss terms and training speed")
        return
    live_panel("chart_training", snap, live, lambda s: training_panel(s, ns))


def training_panel(snap: RunSnapshot, ns: str) -> tuple:
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


EXPLANATIONS = {"Volume & budget": ("volume and the moving budget", explain.VOLUME),
                "Barrier": ("the barrier f(V, a, b)", explain.BARRIER),
                "Gates": ("gate probabilities P(z > 0)", explain.GATES),
                "Hard Concrete": ("the Hard Concrete gate", explain.HARD_CONCRETE),
                "Connectivity": ("mixed connectivity", explain.CONNECTIVITY),
                "Accuracy & speed": ("accuracy, loss terms and speed", explain.TRAINING)}
VIEWS = {"Volume & budget": volume_view, "Barrier": barrier_view, "Gates": gates_view,
         "Hard Concrete": hard_concrete_view, "Connectivity": connectivity_view, "Accuracy & speed": training_view}
# Views drawn anew at every training step: with a live job they update through feeds. The others move
# once an epoch (or with their own widgets), and their fragment reruns when a new epoch arrives.
STEP_VIEWS = ("Volume & budget", "Barrier", "Accuracy & speed")
