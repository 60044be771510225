"""The set-up form (sidebar): presets, every declared setting, validation, and Start.

The widgets are made from the settings' declarations (bar_core/config.py): one per setting, in its
group, the advanced ones in an expander, labels and steps from the declaration's hints. Only what a
declaration cannot say is written here: the widgets that read a registry or the machine (model,
dataset, data root, teacher, device, threads) and which settings hide while they do not apply.

Widget values live in st.session_state under `cfg_*` keys; a preset writes them all at once. Start
builds a TrainConfig, runs its validate() (a bad value is refused here with its one-line message),
then asks the job manager to prepare and start the job (missing data or a bad teacher checkpoint
are refused the same way, before any run folder exists).

While a job trains, the sidebar shows what that job runs with instead of the form (the form may have
been edited since Start, and it cannot start anything until the job ends). That is also cheaper: every
live redraw re-renders every element on the page in the browser, so each widget drawn costs the
training CPU on a 2-core laptop (bench/bench_app.py measures it). A toggle brings the form back to
prepare the next run; its values are kept meanwhile.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import streamlit as st
import torch

from bar_app.classroom import VIEWER_NOTE, session_is_host
from bar_app.runs_page import budget_text
from bar_app.state import start_job, start_series, start_sweep
from bar_app.text import literal
from bar_core.config import GROUPS, SETTING, SETTINGS, ConfigError, Setting, TrainConfig
from bar_core.data import DATASETS, ROOT_OPTIONAL, ROOT_UNUSED, dataset_info, describe_datasets
from bar_core.estimate import Estimate, measure_speed, training_images
from bar_core.job import JobManager
from bar_core.models import MODELS, describe_models
from bar_core.presets import preset
from bar_core.series import WHY_THE_BARRIER, why_the_barrier
from bar_core.sweep import parse_budgets, parse_seeds

QUICK, PAPER, SMOKE = (preset(name).label for name in ("quick", "paper", "smoke"))
WHY = f"{WHY_THE_BARRIER} BAR, then L0 (two short runs)"
# the library's presets (bar_core/presets.py), with the dashboard's lesson after the quick demo
PRESETS: dict[str, TrainConfig] = {
    QUICK: preset("quick").config,
    WHY: TrainConfig(prune_epochs=3, finetune_epochs=1),
    PAPER: preset("paper").config,
    SMOKE: preset("smoke").config,
}
TEACHER_MODES = {"default": "shipped checkpoint", "none": "none: pretrain here first", "file": "a checkpoint file"}
FORM_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.form)


def device_options() -> list[str]:
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def widget_key(s: Setting) -> str:
    """The session_state key of a setting's widget (the teacher's is its mode; a path field follows)."""
    return "cfg_teacher_mode" if s.name == "teacher" else f"cfg_{s.name}"


def label(s: Setting) -> str:
    """The widget's label; an optional number says that 0 stands for unset."""
    return f"{s.title} (0 = {s.unset})" if s.optional and s.type in (int, float) else s.title


def values_from_config(cfg: TrainConfig) -> dict:
    """session_state values (cfg_* keys) for a config: text for text, 0 for an unset number."""
    v = {}
    for s in FORM_SETTINGS:
        x = getattr(cfg, s.name)
        if s.name == "teacher":
            mode = x if x in ("default", "none") else "file"
            v["cfg_teacher_mode"], v["cfg_teacher_path"] = mode, x if mode == "file" else ""
        elif s.name == "device":
            v[widget_key(s)] = x if x in device_options() else "auto"
        elif s.type is str:
            v[widget_key(s)] = x or ""
        elif s.type is bool:
            v[widget_key(s)] = bool(x)
        else:
            v[widget_key(s)] = s.type(x or 0)
    return v


def config_from_values(v: dict) -> TrainConfig:
    """A TrainConfig from cfg_* values (0 or blank means unset where a setting may be unset). Not validated."""
    kw = {}
    method = v.get(widget_key(SETTING["method"]), "bar")
    for s in FORM_SETTINGS:
        x = v[widget_key(s)]
        if not s.used_by(method):  # hidden for this method: its default, which the method refuses to be given
            kw[s.name] = s.default
            continue
        if s.name == "teacher":
            kw[s.name] = x if x in ("default", "none") else v["cfg_teacher_path"].strip()
        elif s.type is str:
            kw[s.name] = (x.strip() or None) if s.optional else x
        elif s.type is bool:
            kw[s.name] = bool(x)
        elif s.type is int:
            kw[s.name] = (int(x) or None) if s.optional else int(x)
        else:
            kw[s.name] = (x or None) if s.optional else x
    return TrainConfig(**kw)


def load_config(cfg: TrainConfig, message: str | None = None) -> None:
    """Fill the form with `cfg` (Re-run with these settings, a shared link). Call before the form is
    drawn (a button callback, or the top of the page); a form hidden while a job runs gets them too."""
    values = values_from_config(cfg)
    st.session_state.update(values)
    if SAVED_FORM in st.session_state:
        st.session_state[SAVED_FORM].update(values)
    st.session_state.pop("setup_message", None)
    if message:
        st.session_state["setup_info"] = message
    st.session_state["setup_edit"] = True  # show the form even while a job runs


def start_quick_demo() -> None:
    """Button callback (the first-open page): the quick demo's settings into the form, then Start."""
    st.session_state["preset"] = QUICK
    load_config(PRESETS[QUICK])
    st.session_state["setup_edit"] = False
    start_job("setup_message", "started", "Preparing data, model and teacher ...", config=PRESETS[QUICK],
              name=None)


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
    st.session_state.setdefault("cfg_sweep_budgets", "")
    st.session_state.setdefault("cfg_sweep_seeds", "")


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


def render_run_settings(config: dict, key: str) -> None:
    """A replayed run's own settings (not the form's), and a button that loads them into the form."""
    try:
        cfg = TrainConfig.from_file_dict(config, where="its config.json")
    except ConfigError as exc:
        with st.expander("Settings of this run"):
            st.caption(f"These settings cannot be loaded into the form: {literal(exc)}")
            st.json(config, expanded=False)
        return
    with st.expander("Settings of this run"):
        st.markdown(setup_summary(cfg))
        if session_is_host():
            st.button("Re-run with these settings", key=f"{key}_rerun", on_click=load_config,
                      args=(cfg, "Loaded the replayed run's settings: change anything, then Start."),
                      help="Fill the set-up form (sidebar) with them.")


FORM_KEYS = [*values_from_config(TrainConfig()), "preset", "cfg_run_name", "cfg_sweep_budgets", "cfg_sweep_seeds"]
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


def _help(s: Setting) -> str:
    return f"{s.help[:1].upper()}{s.help[1:]}; {s.allowed_text(with_unset=False)}."


def _number(s: Setting, where, **kw) -> None:
    step = None if s.step is None else s.type(s.step)  # an int widget needs an int step, a float one a float
    where.number_input(label(s), key=widget_key(s), step=step, format=s.format, help=kw.pop("help", _help(s)), **kw)


def _generic(s: Setting, where) -> None:
    if s.type is bool:
        where.toggle(label(s), key=widget_key(s), help=_help(s))
    elif s.choices is not None:
        where.selectbox(label(s), s.choice_list(), key=widget_key(s), help=_help(s))
    elif s.type is str:
        where.text_input(label(s), key=widget_key(s), help=_help(s))
    else:
        _number(s, where)


def _model(s: Setting, where) -> None:
    models = {m["name"]: m["description"] for m in describe_models()}
    where.selectbox(label(s), list(MODELS), key=widget_key(s),
                    help="\n\n".join(f"**{k}**: {v}" for k, v in models.items()))


def _dataset(s: Setting, where) -> None:
    available = {d["name"]: d["available"] for d in describe_datasets()}
    where.selectbox(label(s), list(DATASETS), key=widget_key(s),
                    format_func=lambda n: n + ("" if available.get(n) else "  (needs a data root)"))


def _data_root(s: Setting, where) -> None:
    info = dataset_info(st.session_state["cfg_dataset"])
    where.text_input(label(s) + (" (optional)" if info.root == ROOT_OPTIONAL else ""), key=widget_key(s),
                     help=f"{info.description}. Needs: {info.needs}")


def _teacher(s: Setting, where) -> None:
    where.selectbox(label(s), list(TEACHER_MODES), key="cfg_teacher_mode", format_func=TEACHER_MODES.get,
                    help=_help(s))
    if st.session_state["cfg_teacher_mode"] == "file":
        where.text_input("Teacher checkpoint path", key="cfg_teacher_path")


def _budget(s: Setting, where) -> None:
    _number(s, where)
    b = st.session_state["cfg_budget"]
    if b is None or not 0 < b <= 1:
        where.caption(f":red[B must be in (0, 1]; Start refuses {b:g}.]" if b is not None else "B must be set")
    else:
        where.caption(f"B = {budget_text(b)}: keep {100 * b:.3g}% of V0 → pruning factor 1/B = **{1 / b:.3g}×**")


def _device(s: Setting, where) -> None:
    where.selectbox(label(s), device_options(), key=widget_key(s),
                    help="auto = CUDA when a GPU is available here, else CPU.")


def _threads(s: Setting, where) -> None:
    _number(s, where, min_value=0, max_value=max(os.cpu_count() or 1, 1),
            help="torch CPU threads; 0 = torch's default. The app's server and your browser share the CPU.")


# Widgets that read a registry or the machine; every other setting gets _generic's widget.
WIDGETS: dict[str, Callable[[Setting, object], None]] = {
    "model": _model, "dataset": _dataset, "data_root": _data_root, "teacher": _teacher, "budget": _budget,
    "device": _device, "threads": _threads}
# Settings that only matter when another one says so, hidden otherwise.
APPLIES: dict[str, Callable[[dict], bool]] = {
    "data_root": lambda v: dataset_info(v["cfg_dataset"]).root != ROOT_UNUSED,
    "kd_temperature": lambda v: bool(v["cfg_kd"]),
    "kd_alpha": lambda v: bool(v["cfg_kd"]),
    "pretrain_epochs": lambda v: v["cfg_teacher_mode"] == "none",
}


def _applies(s: Setting, state) -> bool:
    """Shown in the form: used by the chosen method, and by the other choices made above it."""
    return s.used_by(state.get(widget_key(SETTING["method"]), "bar")) and APPLIES.get(s.name, lambda v: True)(state)


def _paired(s: Setting) -> bool:
    """A number with a short label: two of them share a row."""
    return s.type in (int, float) and s.name not in WIDGETS and len(label(s)) <= 20


def _draw(settings: list[Setting]) -> None:
    """The widgets of `settings` in order, consecutive short numbers two to a row."""
    i = 0
    while i < len(settings):
        s = settings[i]
        if _paired(s) and i + 1 < len(settings) and _paired(settings[i + 1]):
            for t, col in zip(settings[i:i + 2], st.columns(2)):
                WIDGETS.get(t.name, _generic)(t, col)
            i += 2
        else:
            WIDGETS.get(s.name, _generic)(s, st)
            i += 1


def render_setup(manager: JobManager) -> None:
    """The sidebar form. Starting a job sets st.session_state['show'] to the live job and reruns."""
    job = manager.job
    hidden = manager.busy and job is not None and not st.session_state.get("setup_edit")
    if not session_is_host():  # classroom viewer: the host's set-up, no form
        st.header("Set-up")
        st.caption(VIEWER_NOTE)
        if job is not None and job.config is not None:
            st.markdown(setup_summary(job.config))
        return
    _save_or_restore_form(hidden)
    _init_state()
    st.header("Set-up")
    if hidden:
        st.caption(f"{literal(job.name)} runs with this set-up. A job is running: stop it to start another "
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
    if st.session_state.get("preset") == WHY:
        st.caption("Start trains two runs one after another: these settings with BAR, then the same gates, data, "
                   "λ and epochs with L0 (no barrier, no budget). The volume curves appear side by side as they go.")
    state = st.session_state
    for group in GROUPS:
        shown = [x for x in FORM_SETTINGS if x.group == group and not x.advanced and _applies(x, state)]
        if shown:
            st.subheader(group)
            _draw(shown)
    with st.expander("Advanced"):
        for group in GROUPS:
            shown = [x for x in FORM_SETTINGS if x.group == group and x.advanced and _applies(x, state)]
            if shown:
                st.caption(group)
                _draw(shown)
    st.text_input("Run name (blank: automatic)", key="cfg_run_name", placeholder="e.g. resnet8-b0.25-try1")
    with st.expander("Sweep: several budgets or seeds", expanded=bool(st.session_state.get("cfg_sweep_budgets"))):
        st.text_input("Budgets to sweep", key="cfg_sweep_budgets", placeholder="e.g. 1/2,1/4,1/8,1/16",
                      help="Comma-separated budgets B in (0, 1], fractions allowed. With budgets here, Start "
                           "trains one run per (budget, seed) into a sweep folder, one after another, and "
                           "the Budget field above is not used. Blank: one run.")
        st.text_input("Seeds", key="cfg_sweep_seeds", placeholder="e.g. 0,1 (blank: the Seed field)")
        if st.session_state.get("cfg_sweep_budgets", "").strip():
            st.caption("Start begins a sweep; the run name above names the sweep folder.")

    busy = manager.busy
    if not busy:  # measuring while a job trains would time the contention, and slow the job
        _time_estimate()
    if st.button("Start", type="primary", disabled=busy, key="start", width="stretch",
                 help="Stop the running job first" if busy else "Prepare the data and teacher, then train"):
        _start()
    if busy:
        st.caption("A job is running: stop it to start another (one trainer at a time).")
    msg = st.session_state.get("setup_message")
    if msg and st.session_state.get("_message_form") not in (None, _form_values()):
        st.session_state.pop("setup_message")  # the form changed since: the refusal is about older values
        msg = None
    if msg:
        st.error(msg)
        st.session_state.setdefault("_message_form", _form_values())
    info = st.session_state.get("setup_info")
    if info:
        st.info(info)


@st.cache_data(show_spinner="Measuring this machine's training speed ...", max_entries=32, ttl=600)
def _speed(model: str, dataset: str, batch: int, device: str, channels_last: bool) -> float | None:
    info = dataset_info(dataset)
    if info.num_classes is None:
        return None
    return measure_speed(model, info.in_channels, info.num_classes, info.image_size, batch, device, channels_last,
                         steps=3)


LONG_ON_CPU = 30 * 60  # a set-up that would train longer than this on a CPU gets a warning before Start


def _time_estimate() -> None:
    """How long the set-up would train here, from a measured speed (cached per model, data and device)."""
    try:
        cfg = config_from_values(st.session_state).validate()
    except (ConfigError, TypeError, ValueError):
        return
    seen = training_images(cfg)
    if seen is None:
        return
    device = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    speed = _speed(cfg.model, cfg.dataset, min(cfg.batch_size, 32), device, cfg.channels_last)
    if not speed:
        return
    epochs, images = seen
    est = Estimate(seconds=images / speed, images_per_s=speed, images=images, epochs=epochs, device=device)
    if device == "cpu" and est.seconds > LONG_ON_CPU:
        gpu = "no CUDA GPU is available here, so it would train on the CPU" if cfg.device != "cpu" else \
            "it trains on the CPU"
        st.warning(f"This set-up is long for this machine: {gpu}, {est.text()}. The Quick demo preset is "
                   "made for a CPU.", icon="⏱️")
    else:
        st.caption(f"Training time here: {est.text()}.")


def _form_values() -> tuple:
    return tuple(repr(st.session_state.get(k)) for k in FORM_KEYS)


def _start() -> None:
    st.session_state.pop("setup_message", None)
    st.session_state.pop("setup_info", None)
    st.session_state["_message_form"] = _form_values()  # a refusal below stays until the form changes
    try:
        cfg = config_from_values(st.session_state).validate()
    except ConfigError as exc:
        st.session_state["setup_message"] = f"Not started: {exc}"
        return
    except (TypeError, ValueError) as exc:
        st.session_state["setup_message"] = f"Not started: {exc}"
        return
    name = st.session_state.get("cfg_run_name", "").strip() or None
    budgets = st.session_state.get("cfg_sweep_budgets", "").strip()
    if budgets:
        seeds = st.session_state.get("cfg_sweep_seeds", "").strip()
        try:
            sweep = {"budgets": parse_budgets(budgets), "seeds": parse_seeds(seeds) if seeds else None}
        except ConfigError as exc:
            st.session_state["setup_message"] = f"Not started: {exc}"
            return
        if start_sweep("setup_message", "started", "Preparing data, model and teacher ...", config=cfg, name=name,
                       **sweep):
            st.rerun()
        return
    if st.session_state.get("preset") == WHY:  # the lesson: these settings with BAR, then with L0
        names = [f"{name}-bar", f"{name}-l0"] if name else None
        try:
            runs = why_the_barrier(cfg, names)
        except ConfigError as exc:
            st.session_state["setup_message"] = f"Not started: {exc}"
            return
        if start_series("setup_message", "started", "Preparing data, model and teacher ...", runs=runs,
                        title=WHY_THE_BARRIER):
            st.rerun()
        return
    if start_job("setup_message", "started", "Preparing data, model and teacher ...", config=cfg, name=name):
        st.rerun()
