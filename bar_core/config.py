"""Every knob of a BAR run, each declared once: a TrainConfig field made with `setting(...)`.

A declaration holds the name (the field's), type (its annotation), default, allowed range or choices,
help, group and the form's widget hints. The CLI's `bar train` options, `TrainConfig.validate()`, the
dashboard's set-up form and docs/settings.md (`settings_markdown()`) are all built from `SETTINGS`, so
adding a setting is one line here. Choices that live elsewhere (models, datasets, schedules) are read
from their registries when asked for.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .barrier import DEFAULT_CAP, DEFAULT_K, MARGIN, SCHEDULES, TAU, WALL_PRESSURE, wall_cap
from .compilation import COMPILE_BACKENDS
from .data import DATASETS, DEFAULT_DATASET
from .hard_concrete import BETA, GAMMA, LOG_ALPHA_MAX, ZETA, closed_threshold
from .losses import METHODS
from .magnitude import IMPORTANCES
from .models import DEFAULT_MODEL, MODELS
from .precision import DEFAULT_PRECISION, PRECISIONS


class ConfigError(ValueError):
    """A bad setting. The message is one line that names the value and what is allowed."""


# The groups, in the order the CLI help, the form and the docs show them.
WHAT = "What to prune"
BUDGET = "Budget and schedule"
LOSS = "Loss"
GATES = "Gates"
PHASES = "Phases and optimisation"
MACHINE = "Machine"
GROUPS: tuple[str, ...] = (WHAT, BUDGET, LOSS, GATES, PHASES, MACHINE)


@dataclass(frozen=True)
class Setting:
    """One declared setting. `type` is bool, int, float or str; `optional` means None is allowed
    and stands for what `unset` says."""
    name: str
    type: type
    optional: bool
    default: object
    help: str
    group: str
    low: float | None = None          # range of a number; open ends exclude the bound
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[str] | None = None  # from the registry that owns them (models, datasets, schedules)
    allowed: str | None = None        # the allowed values in words, where an extra rule checks them
    unset: str | None = None          # what None means ("all", "torch's default")
    note: str | None = None           # added to an out-of-range message, e.g. what the number is
    resumable: bool = False           # may change when a stopped run continues (where, not what, it computes)
    added_later: bool = False         # a config.json written before it existed computed `earlier`
    earlier: object = None            # that value (None: the default)
    methods: Sequence[str] | None = None  # the methods that use it (None: every method)
    # the set-up form's hints
    label: str | None = None
    step: float | None = None
    format: str | None = None
    advanced: bool = False
    form: bool = True                 # False: not offered by the form (the CLI and the library still take it)

    def earlier_value(self):
        """What a config.json that lacks this (added later) setting computed with."""
        return self.default if self.earlier is None else self.earlier

    def used_by(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        return self.label or self.name

    def choice_list(self) -> tuple[str, ...] | None:
        return None if self.choices is None else tuple(self.choices)

    def range_text(self) -> str:
        """`in (0, 1]`, `>= 0`, `< 0`, or '' when any value of the type goes."""
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{_bound(lo)}, {_bound(hi)}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {_bound(lo)}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {_bound(hi)}"
        return ""

    def allowed_text(self, with_unset: bool = True) -> str:
        """What the setting accepts, in words (the docs; the CLI help, where unset is not typed)."""
        if self.allowed:
            text = self.allowed
        elif (choices := self.choice_list()) is not None:
            text = "one of " + ", ".join(choices)
        elif self.type is bool:
            text = "on or off"
        else:
            text = " ".join(p for p in (_TYPE_WORDS[self.type], self.range_text()) if p)
        return text + (f", or unset ({self.unset})" if self.optional and with_unset else "")

    def default_text(self) -> str:
        d = self.default
        if d is None:
            return self.unset or "unset"
        if isinstance(d, bool):
            return "on" if d else "off"
        return f"{d:g}" if isinstance(d, float) else str(d)

    def in_range(self, v: float) -> bool:
        lo, hi = self.low, self.high
        return ((lo is None or (v > lo if self.low_open else v >= lo))
                and (hi is None or (v < hi if self.high_open else v <= hi)))

    def check(self, v) -> str | None:
        """None if `v` is allowed, else the one-line message: the setting, what is allowed, the value."""
        name = self.name
        if v is None:
            return None if self.optional else f"{name} must be set, got None"
        unset = " or unset" if self.optional else ""
        rng = self.range_text()
        if self.type is bool:
            return None if isinstance(v, bool) else f"{name} must be true or false, got {v!r}"
        if self.type is str:
            if not isinstance(v, str):
                return f"{name} must be text, got {v!r}"
            choices = self.choice_list()
            if choices is not None and v not in choices:
                return f"unknown {name} {v!r}; allowed: {', '.join(choices)}"
            return None
        if self.type is int and (isinstance(v, bool) or not isinstance(v, int)):
            return f"{name} must be an integer{' ' + rng if rng else ''}{unset}, got {v!r}"
        if self.type is float and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            return f"{name} must be a finite number{' ' + rng if rng else ''}{unset}, got {v!r}"
        if not self.in_range(v):
            return f"{name} must be {rng}{unset}{f' ({self.note})' if self.note else ''}, got {v!r}"
        return None


def _bound(v: float) -> str:
    """A range's end as typed: whole numbers in full (2147483647, not 2.14748e+09)."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e16 else f"{v:g}"


_TYPE_WORDS = {int: "integer", float: "number", str: "text", bool: "on or off"}


def setting(default, help: str, group: str, **hints):
    """A TrainConfig field declared as a setting: its default, its help, its group and the hints of
    `Setting` (low/high/low_open/high_open, choices, allowed, unset, note, resumable, label, step,
    format, advanced, form, methods)."""
    return field(default=default, metadata={"setting": {"help": help, "group": group, **hints}})


@dataclass
class TrainConfig:
    # ---- What to prune, on what
    model: str = setting(DEFAULT_MODEL, "architecture to prune (see list-models)", WHAT,
                         choices=MODELS, label="Model")
    dataset: str = setting(DEFAULT_DATASET, "dataset (see list-datasets)", WHAT, choices=DATASETS,
                           label="Dataset")
    data_root: str | None = setting(None, "folder holding the dataset files (cifar10/100, imagefolder, full "
                                    "fashion-mnist)", WHAT, allowed="a folder", unset="none", label="Data root")
    download: bool = setting(False, "allow torchvision to download the dataset (needs network)", WHAT,
                             label="Allow downloading the dataset (needs network)", advanced=True)
    train_limit: int | None = setting(None, "use only N training images (class-balanced, picked with the seed)",
                                      WHAT, low=1, unset="all", label="Train images", step=500, advanced=True)
    test_limit: int | None = setting(None, "use only N test images (class-balanced, the same for every seed)", WHAT,
                                     low=1, unset="all", label="Test images", step=500, advanced=True)
    augment: bool = setting(False, "random crop and flip while training", WHAT, label="Augment (crop + flip)",
                            advanced=True)
    teacher: str = setting("default", "the trained network to prune: 'default' is the shipped checkpoint, 'none' "
                           "pretrains one here first", WHAT, allowed="'default', 'none' or a checkpoint path",
                           label="Teacher (the trained network to prune)")
    method: str = setting("bar", "the objective: bar = L_D + lam*f(V,a,b)*L_S with the budget barrier; l0 = L_D + "
                          "lam*L_S (Louizos et al. 2018), no barrier and no budget: V ends where lam puts it; "
                          "magnitude = the teacher pruned once to mac_ratio of its MACs with Torch-Pruning, then "
                          "fine-tuned for prune + fine-tune epochs", WHAT,
                          choices=tuple(METHODS), added_later=True, label="Method")
    # ---- Budget and schedule
    budget: float = setting(0.25, "final volume budget B as a fraction of V0 (pruning factor 1/B)", BUDGET,
                            low=0, low_open=True, high=1, note="a fraction of the initial volume",
                            label="Budget B (fraction of the initial volume V0 to keep)", step=0.05, format="%g", methods=("bar",))
    mac_ratio: float = setting(0.25, "the MAC target of method magnitude: the teacher is pruned once to this "
                               "fraction of its multiply-accumulates", BUDGET, low=0, low_open=True, high=1,
                               added_later=True, label="MAC ratio (magnitude: pruned ÷ dense MACs)", step=0.05,
                               format="%g", methods=("magnitude",))
    importance: str = setting("bn_scale", "how method magnitude ranks channels: bn_scale = |gamma| of the BatchNorm "
                              "(Network Slimming), l2 = the filter's L2 norm (Li et al.)", BUDGET, choices=IMPORTANCES,
                              added_later=True, label="Channel importance (magnitude)", advanced=True,
                              methods=("magnitude",))
    schedule: str = setting("sigmoid", "how b moves down to B*V0", BUDGET, choices=SCHEDULES,
                            label="Schedule of b", methods=("bar",))
    # above ~1,400 the schedule's exponentials overflow a float; 1,000 is already a step function
    schedule_k: float | None = setting(None, "schedule steepness", BUDGET, low=0, low_open=True, high=1000,
                                       unset=", ".join(f"{k:g} for {s}" for s, k in DEFAULT_K.items() if k),
                                       label="Schedule steepness k", step=1.0, format="%g", advanced=True, methods=("bar",))
    margin: float = setting(MARGIN, "m in a = B*V0 - m(1+tau)V0", BUDGET, low=0, label="Margin m", step=1e-4,
                            format="%.1e", advanced=True, methods=("bar",))
    tau: float = setting(TAU, "b starts at (1+tau)*V0", BUDGET, low=0, label="τ (b starts at (1+τ)·V0)", step=0.01,
                         format="%.3f", advanced=True, methods=("bar",))
    # the finite wall: barrier.py says why 1e4 at the default lam, and why it scales with 1/lam
    barrier_cap: float | None = setting(None, f"finite cap for the barrier f in the loss; unset, {WALL_PRESSURE:g}/lam "
                                 f"({DEFAULT_CAP:g} at lam = 2e-6): the same wall lam*f for every lam", BUDGET, low=0,
                                 low_open=True, unset=f"{WALL_PRESSURE:g}/lam",
                                 label="Barrier cap", step=1000.0, format="%.0e", advanced=True, methods=("bar",))
    # docs/method.md, "The barrier as a wall": a gate needs L steps to close, so f looks L steps ahead
    barrier_lead: bool = setting(True, "the barrier's budget leads the schedule by L steps, the steps a gate takes "
                                 "to close: f is evaluated at b(p + L/T), L = ceil((ln 100 + ln 11) / gate_lr); off "
                                 "is the paper's f(V, a, b(p))", BUDGET, added_later=True, earlier=False,
                                 label="Barrier leads the schedule by the gates' closing time", advanced=True, methods=("bar",))
    wall_restart: bool = setting(True, "restart the gates' Adam moments on the first step after f leaves its cap, "
                                 "so that the capped spike is not remembered", BUDGET, added_later=True, earlier=False,
                                 label="Restart the gates' Adam after the wall", advanced=True, methods=("bar",))
    # docs/method.md, "The barrier as a wall": with Adam a jump of f moves every gate at full speed at once
    barrier_ramp: bool = setting(True, "f rises at most 1.3x per prune step (from at least 1), so that the "
                                 "pressure passes the data term's hold on the least useful gates first; off lets f "
                                 "jump to the cap", BUDGET, added_later=True, earlier=False,
                                 label="Barrier rises gradually (at most 1.3× a step)", advanced=True, methods=("bar",))
    hold_open: bool = setting(True, "no gate closes while f = 0 (V at or below a): with no sparsity pressure the "
                              "network keeps the architecture it reached", BUDGET, added_later=True, earlier=False,
                              label="No gate closes while the barrier is off", advanced=True, methods=("bar",))
    keep_path: bool = setting(True, "no step closes the last channels that carry the input to the head (the stem's "
                              "last one, say): a network cut there answers the same for every image",
                              BUDGET, added_later=True, earlier=False,
                              label="Never cut the network in two", advanced=True, methods=("bar",))
    rising_wall: bool = setting(True, "past the schedule, with V still over B*V0, the barrier's cap rises x1.02 "
                                "a step (x52 over 200 extra steps): there the paper's f is infinite",
                                BUDGET, added_later=True, earlier=False,
                                label="The wall rises past the schedule", advanced=True, methods=("bar",))
    # ---- Loss
    lam: float = setting(2e-6, "lambda, weight of f * L_S (units of the area-weighted volume)", LOSS, low=0,
                         label="λ (weight of f·L_S)", step=1e-6, format="%.2e", methods=("bar", "l0"))
    weighted_volume: bool = setting(True, "area-weighted L_S (BAR) or a plain count of P(z>0)", LOSS,
                                    label="Area-weighted L_S (BAR)", advanced=True, methods=("bar", "l0"))
    kd: bool = setting(True, "distil from the frozen unpruned teacher", LOSS,
                       label="Knowledge distillation from the teacher")
    kd_temperature: float = setting(4.0, "distillation temperature T", LOSS, low=0, low_open=True,
                                    label="Temperature T", step=0.5)
    kd_alpha: float = setting(0.9, "weight of the distillation term (1 - it weighs cross-entropy)", LOSS, low=0,
                              high=1, label="KD weight α", step=0.05, format="%.2f")
    # ---- Gates
    # a gate must travel from +3 to -ln 11; 0.2 is fast enough to follow b in a short demo
    gate_lr: float = setting(0.2, "Adam learning rate of the gates' log alpha", GATES, low=0, low_open=True,
                             label="Gate learning rate", step=0.01, format="%.4f", methods=("bar", "l0"))
    gate_init: float = setting(3.0, "initial log alpha of every gate", GATES,
                               allowed="a number above the closed threshold of gamma, zeta (-ln 11 by default)",
                               label="Initial log α", step=0.5, methods=("bar", "l0"))
    # a gate pushed far up by the data term could not close in time when the budget comes down
    log_alpha_ceiling: bool = setting(True, "hold every gate's log alpha at or below ln 100 while pruning, so "
                                      "that every gate can close within L steps", GATES, added_later=True,
                                      earlier=False, label="Ceiling ln 100 on log α", advanced=True, methods=("bar", "l0"))
    beta: float = setting(BETA, "Hard Concrete temperature", GATES, low=0, low_open=True,
                          label="Hard Concrete β (temperature)", step=0.05, format="%.3f", advanced=True, methods=("bar", "l0"))
    gamma: float = setting(GAMMA, "Hard Concrete lower stretch limit", GATES, high=0, high_open=True,
                           label="Hard Concrete γ (lower stretch limit)", step=0.05, format="%.3f", advanced=True, methods=("bar", "l0"))
    zeta: float = setting(ZETA, "Hard Concrete upper stretch limit", GATES, low=1, low_open=True,
                          label="Hard Concrete ζ (upper stretch limit)", step=0.05, format="%.3f", advanced=True, methods=("bar", "l0"))
    # ---- Phases and optimisation
    pretrain_epochs: int = setting(10, "epochs of pretraining when teacher is 'none'", PHASES, low=0,
                                   label="Pretrain", step=1)
    prune_epochs: int = setting(6, "epochs of BAR pruning", PHASES, low=1, label="Prune", step=1)
    # 8 epochs at lr 2e-3 (cosine) halve the accuracy drop that 4 at 1e-3 leave, for about 13 s more
    finetune_epochs: int = setting(8, "epochs of fine-tuning at the reached architecture", PHASES, low=0,
                                   label="Fine-tune", step=1)
    extra_prune_steps: int = setting(200, "most extra steps at b = B*V0 if V is still over budget when the "
                                     "schedule ends", PHASES, low=0,
                                     label="Extra prune steps if over budget at the end", step=50, advanced=True, methods=("bar",))
    batch_size: int = setting(128, "training batch size", PHASES, low=1, label="Batch size", step=16, advanced=True)
    lr: float = setting(1e-3, "Adam learning rate of the weights while pruning", PHASES, low=0, low_open=True,
                        label="Learning rate (weights, pruning)", step=1e-4, format="%.2e", advanced=True)
    finetune_lr: float = setting(2e-3, "initial learning rate of fine-tuning (cosine decay)", PHASES, low=0,
                                 low_open=True, label="Learning rate (fine-tune)", step=1e-4, format="%.2e",
                                 advanced=True)
    weight_decay: float = setting(5e-4, "weight decay (not on gates)", PHASES, low=0, label="Weight decay",
                                  step=1e-4, format="%.1e", advanced=True)
    max_steps_per_epoch: int | None = setting(None, "cap steps per epoch (quick checks)", PHASES, low=1,
                                              unset="all", label="Max steps per epoch", step=10, advanced=True)
    # ---- Machine
    # numpy's and the data order's generators take 32-bit seeds; larger ones overflow in derived seeds
    seed: int = setting(0, "random seed", MACHINE, low=0, high=2**31 - 1, label="Seed", step=1)
    device: str = setting("auto", "where to train: auto (CUDA when available), cpu or cuda", MACHINE,
                          allowed="auto, cpu, cuda or cuda:N", resumable=True, label="Device")
    threads: int | None = setting(None, "torch CPU threads", MACHINE, low=1, unset="torch's default",
                                  resumable=True, label="Threads", step=1)
    channels_last: bool = setting(True, "channels-last memory format", MACHINE, label="channels_last memory format",
                                  advanced=True)
    precision: str = setting(DEFAULT_PRECISION, "arithmetic of the training step: fp32, or bf16 autocast "
                             "(convolutions in bfloat16 for GPUs with bf16 tensor cores; loss, gates, weights "
                             "and evaluation stay float32)", MACHINE, choices=tuple(PRECISIONS), added_later=True,
                             label="Precision of the training step", advanced=True)
    compile: str = setting("off", "torch.compile the network that trains: off, inductor (generated kernels: Triton "
                           "on CUDA, C++ on a CPU) or aot_eager (traced, no code generated: checks that it "
                           "compiles)", MACHINE, choices=COMPILE_BACKENDS, resumable=True,
                           label="torch.compile backend of the training step", advanced=True)
    tensorboard: str | None = setting(None, "also write TensorBoard event files, into DIR/<run name> (compare runs: "
                                      "tensorboard --logdir DIR; needs the tensorboard package)", MACHINE,
                                      allowed="a folder", unset="none", resumable=True,
                                      label="TensorBoard folder (one subfolder per run)", advanced=True)
    extra: dict = field(default_factory=dict)  # free-form notes carried into config.json; not a setting

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file_dict(cls, data, where: str = "config.json") -> TrainConfig:
        """A config read from a file (a run's config.json, `--config FILE`), checked strictly: an object
        holding every setting that changes what is computed, no unknown key, every value valid. ConfigError names `where` and the key,
        so a file from another version of BAR Explorer is refused with what differs."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must hold a JSON object of settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where} has unknown setting(s) {', '.join(unknown)} (from another version?)")
        # a missing setting that only says where the run goes (device, threads, ...) takes its default;
        # one that changes what is computed may not be guessed
        missing = [s.name for s in SETTINGS if s.name not in data and not s.resumable and not s.added_later]
        # a run from before a setting existed goes on computing what it computed then
        data = {**data, **{s.name: s.earlier_value() for s in SETTINGS if s.added_later and s.name not in data}}
        if missing:
            raise ConfigError(f"{where} lacks setting(s) {', '.join(missing)} (a run's config.json holds every one)")
        if not isinstance(data.get("extra", {}), dict):
            raise ConfigError(f"{where}: extra must be an object, got {data['extra']!r}")
        threads = data.get("threads")
        if isinstance(threads, int) and not isinstance(threads, bool) and threads > (os.cpu_count() or 1):
            data = {**data, "threads": None}  # recorded on a larger machine: where it ran, not what it computes
        try:
            return cls(**data).validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @property
    def cap(self) -> float:
        """The barrier's cap this run uses: `barrier_cap`, or WALL_PRESSURE / lam when it sets none."""
        return wall_cap(self.lam) if self.barrier_cap is None else self.barrier_cap

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        """Raise ConfigError on the first bad value (declaration order, then the rules that tie
        settings together); return self so calls chain."""
        for s in SETTINGS:
            msg = s.check(getattr(self, s.name))
            if msg:
                raise ConfigError(msg)
        for rule in RULES:
            msg = rule(self)
            if msg:
                raise ConfigError(msg)
        return self


def _gates_open(cfg: TrainConfig) -> str | None:
    threshold = closed_threshold(cfg.gamma, cfg.zeta)
    if cfg.gate_init > threshold:
        return None
    return (f"gate_init must keep every gate open at the start (> {threshold:.4f} for these gamma, zeta), "
            f"got {cfg.gate_init!r}")


def _gates_below_limit(cfg: TrainConfig) -> str | None:
    if not cfg.log_alpha_ceiling or cfg.gate_init <= LOG_ALPHA_MAX:
        return None
    return (f"gate_init {cfg.gate_init!r} is above the log alpha ceiling ln 100 = {LOG_ALPHA_MAX:.4f}; lower it, "
            f"or turn log_alpha_ceiling off")


def _barrier_can_open(cfg: TrainConfig) -> str | None:
    """a = (B − m(1+τ))·V0 must be above 0, or the barrier never switches off (f > 0 for every V)."""
    floor = cfg.margin * (1.0 + cfg.tau)
    if cfg.budget > floor:
        return None
    return (f"budget {cfg.budget:.6g} is too small for margin m = {cfg.margin:g} and tau = {cfg.tau:g}: the barrier "
            f"start a = (B - m(1+tau))*V0 would be <= 0; use a budget above {floor:.6g} or a smaller margin")


def _method_uses_settings(cfg: TrainConfig) -> str | None:
    """A setting another method owns, changed from its default, would be silently ignored: refuse it."""
    ignored = [st for st in SETTINGS if not st.used_by(cfg.method)
               and getattr(cfg, st.name) not in (st.default, st.earlier_value())]
    if not ignored:
        return None
    if cfg.method == "l0" and ignored[0].name == "budget":
        return (f"method 'l0' does not enforce a budget (budget {cfg.budget:g}): V ends where lam puts it; leave "
                f"budget at {SETTING['budget'].default_text()}, or use method bar")
    named = ", ".join(f"{st.name} {getattr(cfg, st.name)!r}" for st in ignored)
    owners = sorted({m for st in ignored for m in st.methods})
    it = "it" if len(ignored) == 1 else "them"
    return (f"method {cfg.method!r} ignores {named}: only {' and '.join(owners)} use{'s' if len(owners) == 1 else ''} "
            f"{it}; leave {it} at the default")


def _threads_fit(cfg: TrainConfig) -> str | None:
    """More torch threads than cores make every step wait for the others (1 step in 90 s at 1,000)."""
    cores = os.cpu_count() or 1
    if cfg.threads is None or cfg.threads <= cores:
        return None
    return f"threads {cfg.threads} is more than this machine's {cores} CPU cores; use 1 to {cores}, or unset"


def _device_known(cfg: TrainConfig) -> str | None:
    if cfg.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", cfg.device):
        return None
    return f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}"


def _teacher_given(cfg: TrainConfig) -> str | None:
    return None if cfg.teacher != "" else f"teacher must be 'default', 'none' or a path, got {cfg.teacher!r}"


# What one setting's declaration cannot say: checked after every setting is valid on its own.
RULES: tuple[Callable[[TrainConfig], str | None], ...] = (_method_uses_settings, _gates_open, _gates_below_limit,
                                                          _barrier_can_open, _threads_fit, _device_known, _teacher_given)


def _declared() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(TrainConfig)
    out = []
    for f in dataclasses.fields(TrainConfig):
        if "setting" not in f.metadata:
            continue
        kind, optional = hints[f.name], False
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind, optional = args[0], True
        out.append(Setting(name=f.name, type=kind, optional=optional, default=f.default, **f.metadata["setting"]))
    return tuple(sorted(out, key=lambda s: GROUPS.index(s.group)))  # stable: declaration order within a group


SETTINGS: tuple[Setting, ...] = _declared()
SETTING: dict[str, Setting] = {s.name: s for s in SETTINGS}


def settings_markdown() -> str:
    """docs/settings.md: one table per group (scripts/make_settings_doc.py writes it; a test checks it)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["# Settings", "",
             "Every setting of a BAR run, as declared in `bar_core/config.py`: a field of `bar_core.TrainConfig`,",
             "an option of `bar train`, a field of the dashboard's set-up form (the advanced ones under",
             "\"Advanced\") and a key of a run folder's `config.json`. Numbers may be given to `bar train` as",
             "fractions (`--budget 1/4`); on/off settings take `--name` / `--no-name`. A setting that only some",
             "methods use (the Methods column) is refused with another method unless it keeps its default, so",
             "that nothing is silently ignored.", "",
             "Generated by `python scripts/make_settings_doc.py`; a test fails when it is out of date.", ""]
    for group in GROUPS:
        lines += [f"## {group}", "", "| Setting | `bar train` option | Default | Allowed | What it does | Methods | "
                  "In the form |", "|---|---|---|---|---|---|---|"]
        for s in SETTINGS:
            if s.group != group:
                continue
            flag = f"`{s.flag}` / `--no-{s.flag[2:]}`" if s.type is bool else f"`{s.flag}`"
            form = (f"Advanced: {s.title}" if s.advanced else s.title) if s.form else "no"
            lines.append(f"| `{s.name}` | {flag} | {cell(s.default_text())} | {cell(s.allowed_text())} | "
                         f"{cell(s.help)} | {', '.join(s.methods) if s.methods else 'all'} | {cell(form)} |")
        lines.append("")
    lines += ["`extra` (library and `config.json` only) holds free-form notes carried into the run folder.", ""]
    return "\n".join(lines)
