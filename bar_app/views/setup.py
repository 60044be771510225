"""The set-up form (sidebar): presets, every knob that matters, validation, and Start.

Widget values live in st.session_state under `cfg_*` keys; a preset writes them all at once. Start
builds a TrainConfig, runs its validate() (a bad value is refused here with its one-line message),
then asks the job manager to prepare and start the job (missing data or a bad teacher checkpoint
are refused the same way, before any run folder exists).

While a job trains, the sidebar shows what that job runs with instead of the form (the form may have
been edited since Start, and it cannot start anything until the job ends). That is also cheaper: every
live redraw re-renders every element on the page in the browser, and on a 2-core laptop the form's
thirty widgets took 0.016 of a core from the training (bench/bench_app.py). A toggle brings the form
back to prepare the next run; its values are kept meanwhile.
"""
from __future__ import annotations

import os

import streamlit as st
import torch

from bar_app.state import start_job
from bar_core.barrier import SCHEDULES
from bar_core.config import ConfigError, TrainConfig
from bar_core.data import DATASETS, describe_datasets
from bar_core.job import JobManager
from bar_core.models import MODELS, describe_models

QUICK = "Quick demo (about a minute on a laptop CPU)"
PAPER = "Paper-like (WRN-16-k on CIFAR-10, GPU)"
SMOKE = "Smoke test (synthetic data, seconds)"
PRESETS: dict[str, TrainConfig] = {
    QUICK: TrainConfig(),
    PAPER: TrainConfig(model="wrn16_8", dataset="cifar10", teacher="none", budget=0.125, pretrain_epochs=90,
                       prune_epochs=80, finetune_epochs=50, batch_size=64, lr=1e-3, finetune_lr=1e-4, lam=1e-5,
                       gate_lr=0.01, gate_init=3.0, augment=True, device="auto", extra_prune_steps=2000),
    SMOKE: TrainConfig(dataset="synthetic", teacher="none", pretrain_epochs=1, prune_epochs=2, finetune_epochs=1,
                       max_steps_per_epoch=10, batch_size=64, gate_lr=0.2, lam=5e-5, threads=1),
}
NEEDS_ROOT = {"fashion-mnist": False, "cifar10": True, "cifar100": True, "imagefolder": True}
TEACHER_MODES = {"default": "shipped checkpoint", "none": "none: pretrain here first", "file": "a checkpoint file"}


def device_options() -> list[str]:
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def values_from_config(cfg: TrainConfig) -> dict:
    """session_state values (cfg_* keys) for a config."""
    teacher_mode = cfg.teacher if cfg.teacher in ("default", "none") else "file"
    return {
        "cfg_model": cfg.model, "cfg_dataset": cfg.dataset, "cfg_data_root": cfg.data_root or "",
        "cfg_teacher_mode": teacher_mode, "cfg_teacher_path": cfg.teacher if teacher_mode == "file" else "",
        "cfg_budget": float(cfg.budget), "cfg_schedule": cfg.schedule, "cfg_lam": float(cfg.lam), "cfg_kd": cfg.kd,
        "cfg_kd_temperature": float(cfg.kd_temperature), "cfg_kd_alpha": float(cfg.kd_alpha),
        "cfg_gate_lr": float(cfg.gate_lr), "cfg_gate_init": float(cfg.gate_init),
        "cfg_pretrain_epochs": int(cfg.pretrain_epochs), "cfg_prune_epochs": int(cfg.prune_epochs),
        "cfg_finetune_epochs": int(cfg.finetune_epochs), "cfg_seed": int(cfg.seed),
        "cfg_device": cfg.device if cfg.device in device_options() else "auto", "cfg_threads": int(cfg.threads or 0),
        "cfg_batch_size": int(cfg.batch_size), "cfg_lr": float(cfg.lr), "cfg_finetune_lr": float(cfg.finetune_lr),
        "cfg_max_steps_per_epoch": int(cfg.max_steps_per_epoch or 0), "cfg_train_limit": int(cfg.train_limit or 0),
        "cfg_extra_prune_steps": int(cfg.extra_prune_steps), "cfg_augment": cfg.augment,
        "cfg_channels_last": cfg.channels_last, "cfg_weighted_volume": cfg.weighted_volume,
    }


def config_from_values(v: dict) -> TrainConfig:
    """A TrainConfig from cfg_* values (0 means 'unset' for threads, step cap and train limit). Not validated."""
    mode = v["cfg_teacher_mode"]
    teacher = {"default": "default", "none": "none"}.get(mode) or (v["cfg_teacher_path"].strip() or "")
    return TrainConfig(
        model=v["cfg_model"], dataset=v["cfg_dataset"], data_root=(v["cfg_data_root"].strip() or None),
        teacher=teacher, budget=v["cfg_budget"], schedule=v["cfg_schedule"], lam=v["cfg_lam"], kd=bool(v["cfg_kd"]),
        kd_temperature=v["cfg_kd_temperature"], kd_alpha=v["cfg_kd_alpha"], gate_lr=v["cfg_gate_lr"],
        gate_init=v["cfg_gate_init"], pretrain_epochs=int(v["cfg_pretrain_epochs"]),
        prune_epochs=int(v["cfg_prune_epochs"]), finetune_epochs=int(v["cfg_finetune_epochs"]), seed=int(v["cfg_seed"]),
        device=v["cfg_device"], threads=int(v["cfg_threads"]) or None, batch_size=int(v["cfg_batch_size"]),
        lr=v["cfg_lr"], finetune_lr=v["cfg_finetune_lr"], max_steps_per_epoch=int(v["cfg_max_steps_per_epoch"]) or None,
        train_limit=int(v["cfg_train_limit"]) or None, extra_prune_steps=int(v["cfg_extra_prune_steps"]),
        augment=bool(v["cfg_augment"]), channels_last=bool(v["cfg_channels_last"]),
        weighted_volume=bool(v["cfg_weighted_volume"]))


def _apply_preset() -> None:
    cfg = PRESETS[st.session_state["preset"]]
    st.session_state.update(values_from_config(cfg))
    st.session_state.pop("setup_message", None)


def _init_state() -> None:
    if "preset" not in st.session_state:
        st.session_state["preset"] = QUICK
    for k, v in values_from_config(PRESETS[st.session_state["preset"]]).items():
        st.session_state.setdefault(k, v)
    st.session_state.setdefault("cfg_run_name", "")


def setup_summary(cfg: TrainConfig) -> str:
    """The settings of a run as a short markdown list (what the sidebar shows while it trains)."""
    teacher = {"default": "shipped checkpoint", "none": "none: pretrained here first"}.get(
        cfg.teacher, f"`{cfg.teacher}`")
    epochs = f"{cfg.prune_epochs} prune + {cfg.finetune_epochs} fine-tune"
    if cfg.teacher == "none":
        epochs = f"{cfg.pretrain_epochs} pretrain + " + epochs
    rows = [
        ("Model", f"{cfg.model} on {cfg.dataset}"),
        ("Teacher", teacher),
        ("Budget B", f"{cfg.budget:g} (keep {100 * cfg.budget:.1f}% of V0: pruning factor {1 / cfg.budget:.3g}×)"),
        ("Schedule of b", cfg.schedule),
        ("λ", f"{cfg.lam:.2e}"),
        ("Distillation", f"T = {cfg.kd_temperature:g}, α = {cfg.kd_alpha:g}" if cfg.kd else "off"),
        ("Gates", f"lr {cfg.gate_lr:g}, initial log α {cfg.gate_init:g}"),
        ("Epochs", epochs),
        ("Batch, lr", f"{cfg.batch_size}, {cfg.lr:.2e} (fine-tune {cfg.finetune_lr:.2e})"),
        ("Seed, device, threads", f"{cfg.seed}, {cfg.device}, {cfg.threads or 'torch default'}"),
    ]
    return "\n".join(f"- **{k}**: {v}" for k, v in rows)


FORM_KEYS = [*values_from_config(TrainConfig()), "preset", "cfg_run_name"]
SAVED_FORM = "_form_saved"


def _save_or_restore_form(hidden: bool) -> None:
    """A widget that is not drawn in a script run loses its value. So the first run that hides the
    form copies its values aside, and the run that shows it again copies them back before the widgets
    are drawn. (Re-assigning each value in every hidden run keeps it on the server, but Streamlit
    1.67's browser then shows a number input that comes back as 0: seen in Chromium, not in AppTest.)"""
    if hidden:
        if SAVED_FORM not in st.session_state:
            st.session_state[SAVED_FORM] = {k: st.session_state[k] for k in FORM_KEYS if k in st.session_state}
    else:
        for k, v in st.session_state.pop(SAVED_FORM, {}).items():
            st.session_state[k] = v


def _edit_toggle() -> None:
    # the same widget (key and parameters) above the summary and above the form, so it keeps its value
    st.toggle("Edit the next run's set-up", key="setup_edit",
              help="Shows the form while a job runs. It is redrawn with the live views, which on a 2-core "
                   "laptop takes a little more CPU from the training.")


def render_setup(manager: JobManager) -> None:
    """The sidebar form. Starting a job sets st.session_state['show'] to the live job and reruns."""
    job = manager.job
    hidden = manager.busy and job is not None and not st.session_state.get("setup_edit")
    _save_or_restore_form(hidden)
    _init_state()
    st.header("Set-up")
    if hidden:
        st.caption(f"`{job.name}` runs with this set-up. A job is running: stop it to start another "
                   "(one trainer at a time).")
        if job.config is not None:
            st.markdown(setup_summary(job.config))
        _edit_toggle()
        st.button("Start", type="primary", disabled=True, key="start", width="stretch",
                  help="Stop the running job first")
        return
    if manager.busy:
        _edit_toggle()
    st.selectbox("Preset", list(PRESETS), key="preset", on_change=_apply_preset,
                 help="Fills in every field below; change any of them afterwards.")
    models = {m["name"]: m["description"] for m in describe_models()}
    datasets = {d["name"]: d for d in describe_datasets()}
    st.selectbox("Model", list(MODELS), key="cfg_model", help="\n\n".join(f"**{k}**: {v}" for k, v in models.items()))
    st.selectbox("Dataset", list(DATASETS), key="cfg_dataset",
                 format_func=lambda n: n + ("" if datasets.get(n, {}).get("available") else "  (needs a data root)"))
    ds = st.session_state["cfg_dataset"]
    if ds in NEEDS_ROOT:
        st.text_input("Data root" + ("" if NEEDS_ROOT[ds] else " (optional)"), key="cfg_data_root",
                      help=f"{datasets.get(ds, {}).get('description', '')}. Needs: {datasets.get(ds, {}).get('needs', '')}")
    st.selectbox("Teacher (the trained network to prune)", list(TEACHER_MODES), key="cfg_teacher_mode",
                 format_func=TEACHER_MODES.get)
    if st.session_state["cfg_teacher_mode"] == "file":
        st.text_input("Teacher checkpoint path", key="cfg_teacher_path")

    st.subheader("Budget")
    st.number_input("Budget B (fraction of the initial volume V0 to keep)", key="cfg_budget", step=0.05,
                    format="%.4f", help="B in (0, 1]; the pruning factor is 1/B.")
    b = st.session_state["cfg_budget"]
    st.caption(f"Keep {100 * b:.1f}% of V0 → pruning factor 1/B = **{1 / b:.3g}×**" if b and b > 0
               else "B must be > 0")
    st.selectbox("Schedule of b", list(SCHEDULES), key="cfg_schedule", help="How b moves from V0 down to B·V0.")
    st.number_input("λ (weight of f·L_S)", key="cfg_lam", format="%.2e", step=1e-6)
    st.subheader("Distillation")
    st.toggle("Knowledge distillation from the teacher", key="cfg_kd")
    if st.session_state["cfg_kd"]:
        c1, c2 = st.columns(2)
        c1.number_input("Temperature T", key="cfg_kd_temperature", step=0.5)
        c2.number_input("KD weight α", key="cfg_kd_alpha", step=0.05, format="%.2f")
    st.subheader("Gates")
    c1, c2 = st.columns(2)
    c1.number_input("Gate learning rate", key="cfg_gate_lr", format="%.4f", step=0.01)
    c2.number_input("Initial log α", key="cfg_gate_init", step=0.5)
    st.subheader("Epochs per phase")
    c1, c2, c3 = st.columns(3)
    if st.session_state["cfg_teacher_mode"] == "none":
        c1.number_input("Pretrain", key="cfg_pretrain_epochs", step=1)
    c2.number_input("Prune", key="cfg_prune_epochs", step=1)
    c3.number_input("Fine-tune", key="cfg_finetune_epochs", step=1)
    st.subheader("Machine")
    st.selectbox("Device", device_options(), key="cfg_device",
                 help="auto = CUDA when a GPU is available here, else CPU.")
    c1, c3 = st.columns(2)
    c1.number_input("Seed", key="cfg_seed", step=1)
    c3.number_input("Threads", key="cfg_threads", step=1, min_value=0, max_value=max(os.cpu_count() or 1, 1),
                    help="torch CPU threads; 0 = torch's default. The app's server and your browser share the CPU.")
    with st.expander("Advanced"):
        st.number_input("Batch size", key="cfg_batch_size", step=16)
        st.number_input("Learning rate (weights, pruning)", key="cfg_lr", format="%.2e", step=1e-4)
        st.number_input("Learning rate (fine-tune)", key="cfg_finetune_lr", format="%.2e", step=1e-4)
        st.number_input("Max steps per epoch (0 = all)", key="cfg_max_steps_per_epoch", step=10)
        st.number_input("Train images (0 = all)", key="cfg_train_limit", step=500)
        st.number_input("Extra prune steps if over budget at the end", key="cfg_extra_prune_steps", step=50)
        st.toggle("Augment (crop + flip)", key="cfg_augment")
        st.toggle("channels_last memory format", key="cfg_channels_last")
        st.toggle("Area-weighted L_S (BAR)", key="cfg_weighted_volume")
    st.text_input("Run name (blank: automatic)", key="cfg_run_name", placeholder="e.g. resnet8-b0.25-try1")

    busy = manager.busy
    if st.button("Start", type="primary", disabled=busy, key="start", width="stretch",
                 help="Stop the running job first" if busy else "Prepare the data and teacher, then train"):
        _start()
    if busy:
        st.caption("A job is running: stop it to start another (one trainer at a time).")
    msg = st.session_state.get("setup_message")
    if msg:
        st.error(msg)


def _start() -> None:
    st.session_state.pop("setup_message", None)
    try:
        cfg = config_from_values(st.session_state).validate()
    except ConfigError as exc:
        st.session_state["setup_message"] = f"Not started: {exc}"
        return
    except (TypeError, ValueError) as exc:
        st.session_state["setup_message"] = f"Not started: {exc}"
        return
    name = st.session_state.get("cfg_run_name", "").strip() or None
    if start_job("setup_message", "started", "Preparing data, model and teacher ...", config=cfg, name=name):
        st.rerun()
