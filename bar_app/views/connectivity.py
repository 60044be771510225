"""Connectivity: the network as it stood at an epoch, read by bar_core.connectivity.analyze, and the
physically pruned network built from it (timed, downloadable).

analyze() needs a model, not just gates (a post-activation block with no inner channel left adds its
BatchNorm's constant, which depends on the BN weights). The view rebuilds the run's model, loads the
student weights from the run folder's latest checkpoint (written at every epoch end, so this works
live and on replay), and sets every gate's log α from the chosen epoch's snapshot. Before the first
checkpoint, or if it cannot be read, it falls back to fresh BatchNorm statistics and says so.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from bar_app.views.common import Live, chart, epoch_choice, memo, no_data
from bar_core import figures, plots
from bar_core.checkpoint import CheckpointError, load_file
from bar_core.connectivity import ConnectivityError, analyze
from bar_core.cost import compare
from bar_core.data import DEFAULT_DATASET, DataError, dataset_info
from bar_core.export import ExportError, package_pruned
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


def pruned_report(model: torch.nn.Module, shape: tuple[int, int, int]) -> dict:
    """Materialise, count MACs and parameters, time dense vs pruned (batch 64, 1 thread), package."""
    pruned = materialize(model)
    report = compare(model, pruned, shape, batches=(64,), threads=(1,), rounds=3, repeats=3)
    report["zip"] = package_pruned(pruned)
    return report


def render_pruned(snap: RunSnapshot, ns: str, epoch: int, gates: dict, weights: dict | None, key: tuple) -> None:
    """The physically pruned network: measured speedup next to the MAC ratio, and a download."""
    st.markdown("**The physically pruned network**")
    if weights is None:
        st.caption("Available once the run has written its first checkpoint (at the end of an epoch).")
        return
    results = st.session_state.setdefault("pruned_reports", {})
    if st.button(f"Build the pruned network of epoch {epoch} and time it", key="btn_pruned",
                 help="Materialises the Mixed-Connectivity network and times it against the dense one "
                      "(batch 64, 1 thread; takes a few seconds and competes with training for the CPU)."):
        with st.spinner("Materialising and timing ..."):
            try:
                results[key] = pruned_report(network_at(snap, gates, weights), input_shape(snap))
            except (MaterializeError, ExportError, ConnectivityError, RuntimeError) as exc:
                st.error(f"Could not build the pruned network: {str(exc).splitlines()[0]}")
    report = results.get(key)
    if report is None:
        return
    timing = report["timings"][0]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("MACs kept", f"{100 * report['mac_ratio']:.1f} %", help="pruned ÷ dense multiply-accumulates")
    c2.metric("MAC reduction", f"{report['mac_reduction']:.2f}×")
    c3.metric("Measured speedup", f"{timing['speedup']:.2f}×",
              help="dense time ÷ pruned time on this CPU, batch 64, 1 thread (median of paired rounds)")
    c4.metric("Parameters kept", f"{100 * report['param_ratio']:.1f} %")
    st.caption(f"Speedup ÷ MAC reduction = {timing['efficiency']:.2f} (1.0: time falls as fast as the MACs do). "
               f"The download holds architecture.json and the weights: unzip it and call "
               f"bar_core.export.load_pruned('pruned') — no gated training classes needed.")
    st.download_button("Download the pruned model (.zip)", report["zip"], file_name=f"pruned-epoch{epoch}.zip",
                       mime="application/zip", key="download_pruned")
