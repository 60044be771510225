"""Connectivity: the network as it stood at an epoch, read by bar_core.connectivity.analyze, and the
physically pruned network built from it: timed, listed layer by layer, downloadable.

analyze() needs a model, not just gates (a post-activation block with no inner channel left adds its
BatchNorm's constant, which depends on the BN weights). The view rebuilds the run's model, loads the
student weights from the run folder's latest checkpoint (written at every epoch end, so this works
live and on replay), and sets every gate's log α from the chosen epoch's snapshot. Before the first
checkpoint, or if it cannot be read, it falls back to fresh BatchNorm statistics and says so.

The pruned network is timed against the dense one in a separate Python process
(bar_core.cost.compare_isolated): timed in the server's own process, where the web server's threads
take the GIL and the cores in bursts, the speedup read well below what a plain script measures. The downloads (zip for
load_pruned, .onnx, .pt2) carry the run's preprocessing and class names; .onnx and .pt2 are made only
when clicked, in the download's worker thread (no Streamlit calls there).
"""
from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from bar_app.classroom import VIEWER_NOTE, session_is_host
from bar_app.text import literal
from bar_app.views.common import Live, chart, epoch_choice, memo, no_data
from bar_core import figures, plots
from bar_core.checkpoint import CheckpointError, load_file
from bar_core.connectivity import ConnectivityError, analyze
from bar_core.cost import compare_isolated, layer_table
from bar_core.data import DEFAULT_DATASET, DataError, dataset_info
from bar_core.export import (
    ExportError,
    classify_snippet,
    dataset_preprocessing,
    export_bytes,
    make_preprocessing,
    onnx_available,
    package_pruned,
)
from bar_core.hard_concrete import BETA, GAMMA, ZETA
from bar_core.history import RunSnapshot
from bar_core.materialize import MaterializeError, materialize
from bar_core.models import DEFAULT_MODEL, ModelError, build_model


@st.cache_resource(show_spinner=False, max_entries=4)
def _student_weights(path: str, mtime_ns: int) -> dict | None:
    """The student's state_dict from a run checkpoint (cached per file version; read-only use)."""
    try:
        state = load_file(path, "run checkpoint")
    except CheckpointError:
        return None
    return state.get("student")


def _checkpoint_weights(run_dir: str | None) -> tuple[dict | None, int]:
    if not run_dir:
        return None, 0
    path = Path(run_dir) / "checkpoint.pt"
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None, 0
    return _student_weights(str(path), mtime), mtime


def network_at(snap: RunSnapshot, gates: dict, weights: dict | None) -> torch.nn.Module:
    """The run's gated model with `weights` (if any) and every gate's log α from `gates`."""
    cfg = snap.config
    data = snap.layout.get("data", {})
    if "in_channels" in data and "num_classes" in data:
        in_ch, classes = int(data["in_channels"]), int(data["num_classes"])
    elif weights is not None and "conv1.weight" in weights and "fc.weight" in weights:
        in_ch, classes = int(weights["conv1.weight"].shape[1]), int(weights["fc.weight"].shape[0])
    else:
        info = _dataset(cfg)
        in_ch = info.in_channels if info else 1
        classes = (info.num_classes if info else None) or len(data.get("classes", [])) or 10
    # Built on the meta device: random initialisation would draw from torch's global generator, which
    # the training thread is using at the same moment (it would change the run being watched).
    with torch.device("meta"):
        model = build_model(cfg.get("model", DEFAULT_MODEL), in_ch, classes, beta=cfg.get("beta", BETA),
                            gamma=cfg.get("gamma", GAMMA), zeta=cfg.get("zeta", ZETA))
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.zero_()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_parameters()  # weight 1, bias 0, mean 0, var 1: no random numbers
    if weights is not None:
        model.load_state_dict(weights, strict=False)
    with torch.no_grad():
        for name, arrays in gates.items():
            module = model.get_submodule(name)
            module.gate.log_alpha.copy_(torch.tensor(np.array(arrays["log_alpha"], dtype=np.float32)))
    return model.eval()


def render(snap: RunSnapshot | None, ns: str, live: Live | None = None) -> None:
    if snap is None or not snap.gates:
        no_data("The network as it stands")
        return
    i = epoch_choice(snap, ns, "Epoch (the network as it stood then)", "conn_epoch")
    epoch, g = snap.gates[i]
    render_epoch(snap, ns, epoch, g, i)


def render_epoch(snap: RunSnapshot, ns: str, epoch: int, gates: dict, index: int) -> None:
    """The analysis of the gates of `epoch` (the run's `index`-th snapshot), memoised per run and checkpoint."""
    weights, mtime = _checkpoint_weights(snap.run_dir)

    def build():
        try:
            return analyze(network_at(snap, gates, weights)), None
        except (ConnectivityError, ModelError, KeyError, RuntimeError, AttributeError) as exc:
            return None, f"{type(exc).__name__}: {exc}".splitlines()[0]

    analysis, problem = memo(("conn", ns, len(snap.gates), index, mtime), build)
    if analysis is not None:
        last = index == len(snap.gates) - 1
        chart(memo(("connfig", ns, len(snap.gates), index, mtime),
                   lambda: plots.connectivity_figure(analysis, uirevision=ns, title_suffix=f" at epoch {epoch}")),
              "chart_conn", snap)
        note = "BatchNorm statistics from the run's latest checkpoint" if weights is not None else \
            "no checkpoint yet: fresh BatchNorm statistics (a block with no inner channel left counts as an identity)"
        st.caption(f"Gates of epoch {epoch}{'' if last else ' (an earlier epoch)'}; {note}.")
        blocks = pd.DataFrame([{
            "block": b["name"], "stage": b["stage"], "reads R": f"{len(b['reads'])}/{b['in_width']}",
            "inner kept M": f"{len(b['inner'])}/{b['inner_total']}", "writes W": f"{len(b['writes'])}/{b['out_width']}",
            "branch": b["branch"], "shortcut": b["shortcut"]["kind"] if b["shortcut"]["kind"] == "identity"
            else f"projection {len(b['shortcut']['kept'])}/{b['shortcut']['total']}",
            "identity (removable)": bool(b["removable"])} for b in analysis["blocks"]])
        st.markdown("**Residual blocks**")
        st.dataframe(blocks, hide_index=True, width="stretch", key="table_blocks")
        rows = [{"layer": r["name"], "role": r["role"], "kept": r["kept"], "total": r["total"],
                 "kept %": round(100.0 * r["kept"] / max(r["total"], 1), 1), "partial (0<ẑ<1)": r["partial"]}
                for r in analysis["layers"]]
        render_pruned(snap, ns, epoch, gates, weights, (ns, index, mtime))
    else:
        if problem:
            st.warning(f"Connectivity analysis is not available for this model: {problem}")
        rows = figures.layer_rows(snap, index)
    st.markdown("**Kept / total channels per gated layer**")
    c1, c2 = st.columns([3, 2])
    c1.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="table_layers")
    with c2:
        chart(memo(("kept", ns, len(snap.gates), index, mtime),
                   lambda: figures.kept_channels(snap, index, uirevision=ns, rows=rows)), "chart_kept", snap)


def _dataset(cfg: dict):
    """The registry's entry for the run's dataset (None for a name this version does not know)."""
    try:
        return dataset_info(cfg.get("dataset", DEFAULT_DATASET))
    except DataError:
        return None


def input_shape(snap: RunSnapshot) -> tuple[int, int, int]:
    """(C, H, W) of one example: as the run recorded it, else as its dataset declares it."""
    data = snap.layout.get("data", {})
    if "in_channels" in data and "image_size" in data:
        h, w = data["image_size"]
        return int(data["in_channels"]), int(h), int(w)
    info = _dataset(snap.config)
    if info is None or not info.image_size:
        return 1, 28, 28
    return info.in_channels, *info.image_size


TIMING_BATCH, TIMING_THREADS = 64, 1  # one thread leaves the second core to the server and the browser
TIMING_ROUNDS, TIMING_REPEATS = 5, 3


def export_metadata(snap: RunSnapshot) -> tuple[dict | None, list[str] | None]:
    """(preprocessing, class names) of the run's data: as its layout recorded them, else from the
    dataset registry and its loader (None where this machine cannot tell)."""
    cfg, data = snap.config, snap.layout.get("data", {})
    name = data.get("name") or cfg.get("dataset", DEFAULT_DATASET)
    c, h, w = input_shape(snap)
    if "mean" in data and "std" in data:
        pre = make_preprocessing(name, c, (h, w), data["mean"], data["std"])
    else:
        pre = dataset_preprocessing(name, in_channels=c, image_size=(h, w), root=cfg.get("data_root"),
                                    train_limit=cfg.get("train_limit"), seed=int(cfg.get("seed", 0) or 0))
    info = _dataset(cfg)
    classes = data.get("classes") or (list(info.classes) if info is not None and info.classes else None)
    return pre, (list(classes) if classes else None)


def pruned_report(model: torch.nn.Module, shape: tuple[int, int, int], snap: RunSnapshot | None = None) -> dict:
    """Materialise, count MACs and parameters, time dense vs pruned in a separate process, list the
    layers, package the zip (with the run's preprocessing and classes)."""
    pruned = materialize(model)
    report = compare_isolated(model, pruned, shape, batches=(TIMING_BATCH,), threads=(TIMING_THREADS,),
                              rounds=TIMING_ROUNDS, repeats=TIMING_REPEATS)
    pre, classes = export_metadata(snap) if snap is not None else (None, None)
    report.update(pruned=pruned, shape=tuple(shape), preprocessing=pre, classes=classes,
                  layers=layer_table(pruned, shape),
                  zip=package_pruned(pruned, preprocessing=pre, classes=classes))
    return report


def export_data(kind: str, report: dict) -> Callable[[], bytes]:
    """The .onnx / .pt2 download's callable: exports when clicked (seconds), in Streamlit's worker thread."""
    def make() -> bytes:
        net = copy.deepcopy(report["pruned"])  # two clicks at once must not trace one module together
        return export_bytes(kind, net, torch.zeros(1, *report["shape"]), preprocessing=report["preprocessing"],
                            classes=report["classes"])
    return make


def timing_text(report: dict) -> str:
    """The measured numbers behind the speedup: ms of each network, batch, threads, rounds, spreads."""
    t = report["timings"][0]

    def ms(seconds: float) -> str:
        return f"{1e3 * seconds:.2f}"

    where = "a separate Python process" if report.get("isolated") else "the app's process"
    return (f"Timed in {where}: batch {t['batch']}, {t['threads']} thread{'s' if t['threads'] != 1 else ''}, "
            f"median of {t['rounds']} alternating rounds of {t['repeats']} timings — dense {ms(t['dense_s'])} ms "
            f"({ms(t['dense_spread_s'][0])}–{ms(t['dense_spread_s'][1])}), pruned {ms(t['pruned_s'])} ms "
            f"({ms(t['pruned_spread_s'][0])}–{ms(t['pruned_spread_s'][1])}) per batch; speedup {t['speedup']:.2f}× "
            f"({t['speedup_spread'][0]:.2f}–{t['speedup_spread'][1]:.2f}× over the rounds) against a MAC reduction "
            f"of {report['mac_reduction']:.2f}×: speedup ÷ MAC reduction = {t['efficiency']:.2f} "
            f"(1.0: time falls as fast as the MACs do).")


def render_pruned(snap: RunSnapshot, ns: str, epoch: int, gates: dict, weights: dict | None, key: tuple) -> None:
    """The physically pruned network: measured speedup next to the MAC reduction, its layers, downloads."""
    st.markdown("**The physically pruned network**")
    if weights is None:
        st.caption("Available once the run has written its first checkpoint (at the end of an epoch).")
        return
    results = st.session_state.setdefault("pruned_reports", {})
    host = session_is_host()  # classroom: a viewer's timing would take the host's CPU from the training
    if st.button(f"Build the pruned network of epoch {epoch} and time it", key="btn_pruned", disabled=not host,
                 help=(f"Materialises the Mixed-Connectivity network and times it against the dense one in a "
                       f"separate Python process (batch {TIMING_BATCH}, {TIMING_THREADS} thread; 5-10 s, most of it "
                       f"starting that process; while a run trains it shares the CPU with it).") if host
                 else f"Only the host builds and times the pruned network. {VIEWER_NOTE}") and host:
        with st.spinner("Materialising and timing ..."):
            try:
                results[key] = pruned_report(network_at(snap, gates, weights), input_shape(snap), snap)
            except (MaterializeError, ExportError, ConnectivityError, RuntimeError) as exc:
                st.error(f"Could not build the pruned network: {literal(str(exc).splitlines()[0])}")
    report = results.get(key)
    if report is None:
        return
    timing = report["timings"][0]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("MACs kept", f"{100 * report['mac_ratio']:.1f} %", help="pruned ÷ dense multiply-accumulates")
    c2.metric("MAC reduction", f"{report['mac_reduction']:.2f}×")
    c3.metric("Measured speedup", f"{timing['speedup']:.2f}×",
              help=f"dense time ÷ pruned time on this CPU, batch {timing['batch']}, {timing['threads']} thread(s), "
                   f"median of paired rounds, timed in a separate process")
    c4.metric("Parameters kept", f"{100 * report['param_ratio']:.1f} %")
    busy = " A run was training while this was timed: both networks shared the CPU with it." \
        if snap.state in ("starting", "running") else ""
    st.caption(timing_text(report) + busy)

    stem = f"pruned-epoch{epoch}"
    onnx_ok, onnx_why = onnx_available()
    d1, d2, d3 = st.columns(3)
    d1.download_button("Download the pruned model (.zip)", report["zip"], file_name=f"{stem}.zip",
                       mime="application/zip", key="download_pruned", on_click="ignore", width="stretch",
                       help="architecture.json (channel map, preprocessing, class names) and weights.pt: "
                            "bar_core.export.load_pruned reads the zip as it is.")
    d2.download_button("As ONNX (.onnx)", export_data("onnx", report), file_name=f"{stem}.onnx",
                       mime="application/octet-stream", key="download_pruned_onnx", on_click="ignore",
                       width="stretch", disabled=not onnx_ok,
                       help=("Exported when clicked (a few seconds); opens in Netron; preprocessing and class names "
                             "are its metadata." if onnx_ok else onnx_why))
    d3.download_button("As torch.export (.pt2)", export_data("pt2", report), file_name=f"{stem}.pt2",
                       mime="application/octet-stream", key="download_pruned_pt2", on_click="ignore",
                       width="stretch", help="Exported when clicked (a few seconds); torch.export.load needs torch "
                                             "alone; preprocessing and class names are its extra file.")
    pre = report.get("preprocessing")
    with st.expander("Classify an image with the download (Python)"):
        if pre is None:
            st.warning("The mean and std this run's images were normalised with are not known here (its data "
                       "cannot be read), so the download holds no preprocessing.")
        else:
            st.caption(f"Inputs as the run saw them: {pre['in_channels']}×{pre['input_size'][0]}×"
                       f"{pre['input_size'][1]}, pixels scaled to [0, 1], then (x − mean) / std with mean "
                       f"{pre['mean']} and std {pre['std']}; the network was trained on nothing else.")
            st.code(classify_snippet(f"{stem}.zip", pre), language="python")
            st.caption("The same with the .pt2 file and torch alone:")
            st.code(classify_snippet(f"{stem}.pt2", pre), language="python")
    st.markdown("**Layers of the pruned network**")
    layers = pd.DataFrame(report["layers"])
    st.dataframe(layers, hide_index=True, width="stretch", key="table_pruned_layers")
    st.caption(f"{len(layers)} layers, {int(layers['params'].sum()):,} parameters, {int(layers['MACs'].sum()):,} "
               f"MACs per image (BatchNorm, gathers and adds: no MACs counted).")
