"""The BAR training loop: pretrain (or load a teacher) → prune with the barrier → fine-tune.

The trainer knows no UI. It runs in whatever thread calls `run()`, checks its stop/pause events
between steps, and pushes typed records (bar_core/records.py: start, phase, step, epoch, status,
warning, error, end) to subscribers (a run folder writer, the dashboard's live buffer, a progress
bar). Where training stands is a `TrainProgress`, saved in every checkpoint and restored from it.
"""
from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import compilation, distributed, tensorboard
from .allocator import tune_malloc
from .barrier import barrier_start, budget_at, capped_barrier, lead_steps, ramped_barrier, rising_cap
from .checkpoint import CheckpointError, default_teacher_path, load_teacher, load_weights
from .config import ConfigError, TrainConfig
from .connectivity import carries_input
from .cost import count_macs, dense_twin
from .data import DataBundle, load_data
from .data.batching import TensorBundle
from .data.registry import check_teacher_data
from .hard_concrete import LOG_ALPHA_MAX, closed_threshold
from .health import health_findings
from .losses import bar_objective, distillation_loss, l0_objective
from .magnitude import close_removed_gates, prune_to_macs
from .materialize import materialize
from .models import build_model, gate_parameters, gates, set_gates_frozen, weight_parameters
from .precision import autocast
from .records import (
    EndRecord,
    EpochRecord,
    MessageRecord,
    PhaseRecord,
    Record,
    StartRecord,
    StatusRecord,
    StepRecord,
)
from .storage import storage_problem
from .volume import expected_volume, initial_volume, measure_areas, volume

Subscriber = Callable[[Record], None]


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, ...); the run folder keeps its last good checkpoint."""


MAC_TOLERANCE = 0.02  # method magnitude: how close to mac_ratio its pruned network must come


@dataclass
class TrainProgress:
    """Where a run stands; a checkpoint's "progress" is `asdict` of it, and a stopped run continues
    from exactly this."""
    step: int = 0                    # steps done (the next step's index)
    phase_index: int = 0             # into Trainer.phases
    epoch_in_phase: int = 0          # epochs of that phase done
    batch_in_epoch: int = 0          # batches of the current epoch done
    global_epoch: int = 0            # epochs done over all phases
    steps_over_budget: int = 0
    extra_steps: int = 0             # prune steps past the schedule (V still above B·V0 when it ended)
    student_initialised: bool = False  # the student holds the teacher's weights
    teacher_accuracy: float | None = None
    wall_seconds: float = 0.0        # training seconds of earlier sessions (in a checkpoint: up to it)
    last_accuracy: float | None = None  # test accuracy after the last epoch (a continued run's summary needs it)
    epoch_losses: list[float] = field(default_factory=list)  # this epoch's step losses so far (its mean is recorded)
    at_wall: bool = False            # the last prune step's f was at its cap
    last_f: float = 0.0              # the last prune step's f (barrier_ramp limits how fast it grows)

    @classmethod
    def from_checkpoint(cls, p: dict) -> TrainProgress:
        """From a checkpoint's "progress"; a missing or unknown field is a one-line CheckpointError."""
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in p and f.name not in _ADDED_LATER]
        unknown = sorted(set(p) - names)
        if missing or unknown:
            what = f"lacks {missing[0]!r}" if missing else f"has an unknown progress field {unknown[0]!r}"
            raise CheckpointError(f"run checkpoint {what}; it is not from this version")
        return cls(**{f.name: _COERCE[f.type](p[f.name]) for f in fields(cls) if f.name in p})


# Fields an older checkpoint may lack: they take their defaults.
_ADDED_LATER = frozenset({"last_accuracy", "epoch_losses", "at_wall", "last_f"})
# A field's annotation → how a checkpoint's value is read back (postponed annotations are strings).
_COERCE = {"int": int, "bool": bool, "float": float, "float | None": lambda v: None if v is None else float(v),
           "list[float]": lambda v: [float(x) for x in v]}


@dataclass
class Phase:
    name: str          # pretrain | prune | finetune
    epochs: int
    start_step: int    # global step index of its first step
    steps: int         # planned steps (without any extra prune steps)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} asked for, but no CUDA GPU is available here; use cpu or auto")
    return torch.device(requested)


def gate_snapshot(model: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """Per gated layer: log α, P(z > 0) and the test gate ẑ, as float32 numpy arrays."""
    snap = {}
    with torch.no_grad():
        for name, g in gates(model):
            snap[name.removesuffix(".gate")] = {
                "log_alpha": g.log_alpha.detach().float().cpu().numpy().copy(),
                "prob_open": g.prob_open().float().cpu().numpy(),
                "test_gate": g.deterministic().float().cpu().numpy(),
            }
    return snap


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, device: torch.device, channels_last: bool,
             batch_size: int = 500) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the test set, in eval mode (test gates ẑ)."""
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in data.test_batches(batch_size, device=device):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += y.numel()
    model.train(was_training)
    return correct / max(total, 1), loss_sum / max(total, 1)


class Trainer:
    """One BAR run. `prepare()` loads data, models and teacher (and raises on bad input before
    anything is written); `run()` trains, blocking, in the calling thread."""

    def __init__(self, config: TrainConfig, run_folder=None):
        self.config = config.validate()
        self.run_folder = run_folder
        self._subscribers: list[Subscriber] = []
        self._stop = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self.state = "created"
        self.prepared = False
        self.progress = TrainProgress()  # a resumed run's comes from its checkpoint
        self._t0 = time.perf_counter()   # restarted by run(); set so that checkpoint_state() works before it

    # ---- control, safe to call from any thread -------------------------------------------------
    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def stop(self) -> None:
        self._stop.set()
        self._unpaused.set()

    def pause(self) -> None:
        self._unpaused.clear()

    def resume(self) -> None:
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def _emit(self, record: Record, *, best_effort: bool = False) -> None:
        record = distributed.reduce_record(record)  # torchrun: the global batch's loss (every rank emits the same records)
        for fn in self._subscribers:
            if not best_effort:
                fn(record)
                continue
            try:
                fn(record)
            except OSError:  # the disk that ended the run may refuse its last records too: the others get them
                pass

    # ---- set-up ---------------------------------------------------------------------------------
    def prepare(self) -> Trainer:
        """Load everything the run needs; every bad input raises a one-line error here."""
        if self.prepared:
            return self
        cfg = self.config
        if cfg.tensorboard:
            tensorboard.check(cfg.tensorboard)  # the optional package and the folder, before the slow part
        self.device = resolve_device(cfg.device)
        if problem := compilation.compile_problem(cfg.compile, self.device):
            raise ConfigError(problem)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        tune_malloc()  # +15 % images/s on CPU (allocator.py)
        torch.manual_seed(cfg.seed)
        self.data = load_data(cfg.dataset, cfg.data_root, download=cfg.download, train_limit=cfg.train_limit,
                              test_limit=cfg.test_limit, seed=cfg.seed)
        spec = self.data.spec
        self.student = build_model(cfg.model, spec.in_channels, spec.num_classes, gate_init=cfg.gate_init,
                                   beta=cfg.beta, gamma=cfg.gamma, zeta=cfg.zeta)
        self.teacher = build_model(cfg.model, spec.in_channels, spec.num_classes, gated=False)
        self.teacher_source = "pretrained in this run"
        if cfg.teacher != "none":
            path = default_teacher_path(cfg.model, cfg.dataset) if cfg.teacher == "default" else Path(cfg.teacher)
            if cfg.teacher == "default" and not path.is_file():
                raise ConfigError(f"no shipped teacher for model {cfg.model!r} on dataset {cfg.dataset!r}; "
                                  f"pass a checkpoint with --teacher PATH, or --teacher none to pretrain first")
            ckpt = load_teacher(path, cfg.model, spec.in_channels, spec.num_classes)
            check_teacher_data(ckpt.get("dataset"), cfg.dataset, path)
            load_weights(self.teacher, ckpt["state_dict"], f"teacher checkpoint {str(path)!r}")
            self.teacher_source = str(path)
        sample = self.data.sample_input(2)
        self.layers = measure_areas(self.student, sample)
        self.v0 = initial_volume(self.student)
        smallest = min(layer.area for layer in self.layers)
        if cfg.method == "bar" and cfg.budget * self.v0 < smallest:  # not even one map of the smallest layer could survive
            raise ConfigError(f"budget {cfg.budget:.6g} keeps B*V0 = {cfg.budget * self.v0:.4g}, less than one channel "
                              f"of the smallest gated layer of {cfg.model} (area {smallest}); use a budget of at "
                              f"least {smallest / self.v0:.3g}")
        self.a = barrier_start(self.v0, cfg.budget, cfg.margin, cfg.tau)
        self.gate_list = [g for _, g in gates(self.student)]
        self._carrier_pattern, self._carriers = None, []  # the path guard's last carriers (_last_carriers)
        self.steps_per_epoch = self.data.num_train_batches(cfg.batch_size)
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set "
                              f"({spec.train_size} images); use a smaller batch")
        self.phases: list[Phase] = []
        start = 0
        plan = ([("pretrain", cfg.pretrain_epochs)] if cfg.teacher == "none" else []) + \
               ([("finetune", cfg.prune_epochs + cfg.finetune_epochs)] if cfg.method == "magnitude"  # pruned at once
                else [("prune", cfg.prune_epochs), ("finetune", cfg.finetune_epochs)])
        for name, epochs in plan:
            if epochs > 0:
                self.phases.append(Phase(name, epochs, start, epochs * self.steps_per_epoch))
                start += epochs * self.steps_per_epoch
        self.total_steps = start
        # at most a tenth of the prune phase: a short run is not held at B·V0 from its first step
        prune_steps = sum(p.steps for p in self.phases if p.name == "prune")
        self.lead = min(lead_steps(cfg.gate_lr, LOG_ALPHA_MAX, closed_threshold(cfg.gamma, cfg.zeta)),
                        prune_steps // 10) if cfg.barrier_lead else 0
        self.noise = torch.Generator(device=self.device)
        for _, g in gates(self.student):
            g.generator = self.noise
        for m in (self.student, self.teacher):
            m.to(self.device)
            if cfg.channels_last:
                m.to(memory_format=torch.channels_last)
        self._teacher_table: Tensor | bool | None = None  # _teacher_logits: None until the first distilled step
        self.optim_state: list | None = None  # a resumed run's optimiser states, until its phase loads them
        self.resume_rng: dict | None = None    # a run stopped mid-epoch: its random states, until its next step
        self.prepared = True
        return self

    def _init_student_from_teacher(self) -> None:
        """BAR prunes a trained network: the student starts as the teacher plus open gates."""
        load_weights(self.student, self.teacher.state_dict(), "teacher", allow_missing_gates=True)
        if self.config.method == "magnitude":
            self._prune_once()
        self.progress.student_initialised = True

    def _prune_once(self) -> None:
        """method magnitude: Torch-Pruning ranks the teacher's channels and removes the least important
        down to mac_ratio of its MACs; the student's gates of those channels close for good."""
        cfg, spec = self.config, self.data.spec
        shape = (spec.in_channels, *spec.image_size)
        # 2 % where channels allow; a small target may only be reached to a few percent
        _, report = prune_to_macs(self.teacher.eval(), shape, cfg.mac_ratio, importance=cfg.importance,
                                  tolerance=MAC_TOLERANCE, closest=True)
        close_removed_gates(self.student, report.removed)
        self._emit(MessageRecord("info", f"Torch-Pruning removed {report.removed_channels} channels by "
                                         f"{cfg.importance} importance: MACs {report.mac_ratio:.4f} of the teacher's "
                                         f"(asked {cfg.mac_ratio:g}), V/V0 {report.volume_ratio:.4f}", 0))
        if abs(report.mac_ratio - cfg.mac_ratio) > MAC_TOLERANCE * cfg.mac_ratio:
            self._emit(MessageRecord("warning", f"mac_ratio {cfg.mac_ratio:g} is not reachable to "
                                                f"{MAC_TOLERANCE:.0%}: one channel more or less moves the MACs by "
                                                f"more; the closest is {report.mac_ratio:.4f}", 0))

    def _make_optimizers(self, phase: str) -> list[torch.optim.Optimizer]:
        cfg = self.config
        if phase == "pretrain":
            return [torch.optim.Adam(self.teacher.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)]
        lr = cfg.lr if phase == "prune" else cfg.finetune_lr
        opts = [torch.optim.Adam(weight_parameters(self.student), lr=lr, weight_decay=cfg.weight_decay)]
        if phase == "prune":
            # Gates: their own learning rate and no weight decay (decay would pull log α to 0, not down).
            opts.append(torch.optim.Adam(gate_parameters(self.student), lr=cfg.gate_lr, weight_decay=0.0))
        return opts

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint_state(self, optimizers: list[torch.optim.Optimizer]) -> dict:
        return {
            "student": {k: v.detach().cpu() for k, v in self.student.state_dict().items()},
            "teacher": {k: v.detach().cpu() for k, v in self.teacher.state_dict().items()},
            "optimizers": [o.state_dict() for o in optimizers],
            "progress": asdict(replace(self.progress, wall_seconds=self._wall())),
            # a run stopped inside an epoch goes on with the gate noise and dropout it would have drawn
            "rng": {"torch": torch.get_rng_state(), "noise": self.noise.get_state()},
        }

    def load_checkpoint_state(self, state: dict) -> None:
        """Continue a stopped run from its checkpoint (call after prepare())."""
        try:
            load_weights(self.student, state["student"], "run checkpoint (student)")
            load_weights(self.teacher, state["teacher"], "run checkpoint (teacher)")
            progress = TrainProgress.from_checkpoint(state["progress"])
            self.optim_state = state["optimizers"]
        except KeyError as exc:
            raise CheckpointError(f"run checkpoint lacks {exc.args[0]!r}; it is not from this version") from None
        self.progress = progress
        self.resume_rng = state.get("rng") if self._inside_a_batch_sequence() else None
        for m in (self.student, self.teacher):
            m.to(self.device)

    def _inside_a_batch_sequence(self) -> bool:
        """Whether the run stands inside an epoch's batches (or a round of extra prune steps), where
        the random generators are not reseeded before the next step."""
        p = self.progress
        if 0 < p.batch_in_epoch < self.steps_per_epoch:
            return True
        return p.batch_in_epoch >= self.steps_per_epoch and p.extra_steps % self.steps_per_epoch != 0

    def _restore_rng(self) -> None:
        """Before the first step after a mid-epoch resume: the random states the run stopped with."""
        if self.resume_rng is not None:
            torch.set_rng_state(self.resume_rng["torch"])
            self.noise.set_state(self.resume_rng["noise"])
            self.resume_rng = None

    # ---- where the run stands, for readers in any thread ----------------------------------------
    @property
    def step(self) -> int:
        """Steps done so far."""
        return self.progress.step

    @property
    def teacher_accuracy(self) -> float | None:
        return self.progress.teacher_accuracy

    def _wall(self) -> float:
        """Training seconds of the whole run so far (earlier sessions included)."""
        return self.progress.wall_seconds + time.perf_counter() - self._t0

    def _save(self, optimizers) -> None:
        if self.run_folder is not None:
            self.run_folder.save_checkpoint(self.checkpoint_state(optimizers))

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> dict:
        self._t0 = time.perf_counter()
        self.prepare()
        if self.run_folder is not None:
            # First, so that other subscribers see the folder as this record leaves it (a resumed
            # run's folder drops the steps after its checkpoint on "start").
            self._subscribers.insert(0, self.run_folder.write_record)
        cfg = self.config
        if cfg.tensorboard:  # here, so that the CLI, the app and library users all get it; it closes on "end"
            self.subscribe(tensorboard.TensorBoardLog(cfg.tensorboard, tensorboard.run_name(self.run_folder, cfg)))
        self.state = "running"
        error = None
        optimizers: list[torch.optim.Optimizer] = []
        spec = self.data.spec
        self._emit(StartRecord(
            config=cfg.to_dict(), v0=self.v0, a=self.a, budget_volume=cfg.budget * self.v0,
            total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch, resumed_at=self.progress.step,
            layers=[asdict(l) for l in self.layers], teacher=self.teacher_source,
            data={"name": spec.name, "classes": list(spec.classes), "in_channels": spec.in_channels,
                  "num_classes": spec.num_classes, "image_size": list(spec.image_size),
                  "train_size": spec.train_size, "test_size": spec.test_size},
            device=str(self.device), threads=torch.get_num_threads(), phases=[asdict(p) for p in self.phases]))
        if self.progress.step > 0:  # events.jsonl tells the sessions of a continued run apart
            self._emit(StatusRecord("continued", self.progress.step))
        try:
            if self.progress.teacher_accuracy is None and cfg.teacher != "none":
                self.progress.teacher_accuracy, _ = evaluate(self.teacher, self.data, self.device, cfg.channels_last)
            if self.progress.step == 0 and self.phases[0].name != "pretrain":
                self._init_student_from_teacher()
                self._epoch_record("start", 0.0)
            while self.progress.phase_index < len(self.phases) and not self._stop.is_set():
                optimizers = self._run_phase(self.phases[self.progress.phase_index])
                if self._stop.is_set():
                    break
                self.progress.phase_index += 1
                # extra_steps stays: only the prune phase takes them, and the summary reports them
                self.progress.epoch_in_phase = self.progress.batch_in_epoch = 0
            self.state = "stopped" if self._stop.is_set() else "done"
            if self.state == "stopped":
                self._emit(StatusRecord("stopped", self.progress.step))
                self._save(optimizers)  # Stop keeps everything done so far
        except TrainingError as exc:
            self.state, error = "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure ends the run with a readable record
            self.state = "error"
            error = storage_problem(exc) or f"{type(exc).__name__}: {exc}".splitlines()[0]
        if error:
            self._emit(MessageRecord("error", error, self.progress.step), best_effort=True)
        summary = self.summary(error)
        self._emit(EndRecord(self.state, summary), best_effort=True)
        return summary

    def _run_phase(self, phase: Phase) -> list[torch.optim.Optimizer]:
        cfg = self.config
        if phase.name != "pretrain" and not self.progress.student_initialised:
            self._init_student_from_teacher()
        set_gates_frozen(self.student, phase.name != "prune")
        optimizers = self._make_optimizers(phase.name)
        if self.optim_state is not None:  # resuming inside this phase
            for opt, st in zip(optimizers, self.optim_state):
                opt.load_state_dict(st)
            self.optim_state = None
        self._emit(PhaseRecord(phase.name, self.progress.step, phase.epochs))
        model = distributed.wrap(self.teacher if phase.name == "pretrain" else self.student)
        model = compilation.for_training(model, cfg.compile)
        model.train()
        if phase.name != "pretrain":
            self.teacher.eval()  # frozen: its BN statistics must not drift while it distils
        while self.progress.epoch_in_phase < phase.epochs:
            train_loss = self._run_epoch(phase, model, optimizers)
            if self._stop.is_set():
                return optimizers
            if phase.name == "prune" and cfg.method == "bar" and self.progress.epoch_in_phase == phase.epochs - 1:
                self._prune_until_within_budget(phase, model, optimizers)
                if self._stop.is_set():
                    return optimizers
            self.progress.epoch_in_phase += 1
            self.progress.batch_in_epoch = 0
            self.progress.epoch_losses = []
            self.progress.global_epoch += 1
            self._epoch_record(phase.name, train_loss)
            self._save(optimizers)
        if phase.name == "pretrain" and self.run_folder is not None:
            self.run_folder.save_teacher(self.teacher, cfg, self.data.spec, self.progress.teacher_accuracy)
        return optimizers

    def _batches(self, epoch_seed: int):
        cfg = self.config
        # Reseeding per epoch makes gate noise and data order a function of (seed, epoch): a run is
        # reproducible on CPU, and a resumed run draws the same batches it would have drawn.
        seed = cfg.seed * 100_003 + epoch_seed
        torch.manual_seed(seed)  # dropout and anything else that draws from the global generator
        self.noise.manual_seed(seed)
        it = self.data.train_batches(cfg.batch_size, seed=cfg.seed, epoch=epoch_seed, augment=cfg.augment,
                                     device=self.device, with_index=True)
        for i, batch in enumerate(it):
            if i >= self.steps_per_epoch:
                break
            yield i, distributed.shard(batch)

    def _run_epoch(self, phase: Phase, model: nn.Module, optimizers) -> float:
        if self.progress.batch_in_epoch == 0:
            self.progress.epoch_losses = []
        losses = self.progress.epoch_losses  # kept in the checkpoint: a resumed epoch records the same mean
        for i, (x, y, index) in self._batches(self.progress.global_epoch):
            if i < self.progress.batch_in_epoch:
                continue  # resumed mid-epoch: these batches were already trained on
            if not self._wait_if_paused(optimizers):
                break
            self._restore_rng()
            losses.append(self._train_step(phase, model, optimizers, x, y, index))
            self.progress.batch_in_epoch = i + 1
        return float(np.mean(losses)) if losses else float("nan")

    def _prune_until_within_budget(self, phase: Phase, model, optimizers) -> None:
        """Stochastic steps can leave V above B·V0 when the schedule ends: keep pruning at b = B·V0
        (barrier wall, capped f) until V is within budget, at most `extra_prune_steps` steps."""
        cfg = self.config
        budget_volume = cfg.budget * self.v0
        while (volume(self.student) > budget_volume and self.progress.extra_steps < cfg.extra_prune_steps
               and not self._stop.is_set()):
            if self.progress.extra_steps == 0:
                self._emit(MessageRecord("warning", f"V/V0 = {volume(self.student) / self.v0:.4f} is above the "
                                                    f"budget {cfg.budget} when the schedule ends; pruning on at "
                                                    f"b = B·V0", self.progress.step))
            # rounds of one epoch's batches each, told by the extra steps done: a resumed run picks up
            # the same batch
            round_, done = divmod(self.progress.extra_steps, self.steps_per_epoch)
            for i, (x, y, index) in self._batches(10_000 + self.progress.global_epoch * 100 + round_ + 1):
                if i < done:
                    continue
                if (volume(self.student) <= budget_volume or self.progress.extra_steps >= cfg.extra_prune_steps
                        or not self._wait_if_paused(optimizers)):
                    break
                self._restore_rng()
                self._train_step(phase, model, optimizers, x, y, index)
                self.progress.extra_steps += 1
        if volume(self.student) > budget_volume and not self._stop.is_set():
            self._emit(MessageRecord("warning", f"budget not reached: V/V0 = {volume(self.student) / self.v0:.4f} > "
                                                f"{cfg.budget} after {self.progress.extra_steps} extra steps; "
                                                f"raise lam or gate_lr", self.progress.step))

    def _wait_if_paused(self, optimizers) -> bool:
        """Block while paused; False when the run should stop."""
        if distributed.agree_to_stop():  # torchrun: a signal to any rank stops every rank before the same step
            self.stop()
        if self.paused and not self._stop.is_set():
            self._save(optimizers)  # a paused run is safe to kill
            self._emit(StatusRecord("paused", self.progress.step))
            self.state = "paused"
            while not self._unpaused.wait(0.2):
                pass
            self.state = "running"
            if not self._stop.is_set():
                self._emit(StatusRecord("running", self.progress.step))
        return not self._stop.is_set()

    def _teacher_logits(self, x: Tensor, index: Tensor) -> Tensor:
        """The frozen teacher's logits for a batch: from a table of the whole training set when the run
        distils over at least twice as many images as the set holds (`_teacher_table_pays`), else
        computed for the batch. The teacher never changes while it distils and the images are the same
        every epoch, so the table saves all but one of its forward passes per image."""
        if self._teacher_table is None:
            self._teacher_table = self._all_teacher_logits() if self._teacher_table_pays() else False
        if self._teacher_table is not False:
            return self._teacher_table.index_select(0, index.to(self._teacher_table.device))
        with torch.no_grad():
            return self.teacher(x)

    def _teacher_table_pays(self) -> bool:
        cfg, spec = self.config, self.data.spec
        if cfg.augment or distributed.active() or not isinstance(self.data, TensorBundle):
            return False  # new images every epoch; a rank would compute every rank's table; images read from disk
        distilled = sum(p.steps for p in self.phases if p.name in ("prune", "finetune")) * cfg.batch_size
        return distilled >= 2 * spec.train_size and spec.train_size * spec.num_classes <= 50_000_000  # ≤ 200 MB

    @torch.no_grad()
    def _all_teacher_logits(self) -> Tensor:
        """The teacher's logits for every training image, in stored order, in batches of the run's size."""
        self.teacher.eval()
        rows = []
        for x in self.data.train_in_order(self.config.batch_size, self.device):
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            rows.append(self.teacher(x))
        return torch.cat(rows)

    def _train_step(self, phase: Phase, model: nn.Module, optimizers, x, y, index: Tensor) -> float:
        cfg = self.config
        t_start = time.perf_counter()
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        distil = phase.name != "pretrain" and cfg.kd
        with autocast(self.device, cfg.precision):  # bf16: the networks' arithmetic; the losses stay float32
            logits = model(x).float()
            teacher_logits = self._teacher_logits(x, index).float() if distil else None
        if distil:
            data_loss = distillation_loss(logits, teacher_logits, y, cfg.kd_temperature, cfg.kd_alpha)
        else:
            data_loss = F.cross_entropy(logits, y)

        V, b, f, ls = float(self.v0), float("nan"), 0.0, None
        b_wall = float("nan")
        if phase.name == "prune" and cfg.method == "l0":
            V = volume(self.student)
            ls = expected_volume(self.student, cfg.weighted_volume)
            f = 1.0  # no barrier: L_S weighs λ all the time (recorded as f = 1)
            loss = l0_objective(data_loss, ls, cfg.lam)
        elif phase.name == "prune":
            V = volume(self.student)
            # Progress after this step: the phase's last scheduled step trains at b = B·V0 exactly.
            progress = min((self.progress.step - phase.start_step + 1) / max(phase.steps, 1), 1.0)
            b = budget_at(progress, self.v0, cfg.budget, cfg.schedule, cfg.schedule_k, cfg.tau)
            # the wall the gates must meet is the budget L steps ahead (barrier.lead_steps); V ≥ b(p) is still over
            b_wall = budget_at(progress + self.lead / max(phase.steps, 1), self.v0, cfg.budget, cfg.schedule,
                               cfg.schedule_k, cfg.tau)
            cap = rising_cap(cfg.cap, self.progress.extra_steps) if cfg.rising_wall else cfg.cap
            f = capped_barrier(V, self.a, b_wall, cap)
            if cfg.barrier_ramp:  # f rises at most RAMP× a step: the least useful gates feel it first
                f = ramped_barrier(f, self.progress.last_f)
            self.progress.last_f = f
            at_wall = f >= cap
            if cfg.wall_restart and self.progress.at_wall and not at_wall:
                optimizers[1].state.clear()  # Adam would remember the capped spike and keep closing gates
            self.progress.at_wall = at_wall
            ls = expected_volume(self.student, cfg.weighted_volume)
            loss = bar_objective(data_loss, ls, f, cfg.lam)
        else:
            if phase.name == "finetune":
                V = volume(self.student)
            loss = data_loss
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at step {self.progress.step} ({phase.name}, epoch "
                                f"{self.progress.global_epoch + 1}); stopped, the last good checkpoint is kept")
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizers[0].param_groups[0]["lr"]
        if phase.name == "finetune":
            # Cosine decay over the fine-tune phase: settle the weights at the reached architecture.
            frac = (self.progress.step - phase.start_step) / max(phase.steps, 1)
            lr = cfg.finetune_lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            optimizers[0].param_groups[0]["lr"] = lr
        # no pressure, no pruning: Adam's full-size steps on the data term's noise would close gates for good
        hold = cfg.hold_open and phase.name == "prune" and cfg.method == "bar" and f == 0
        guard = cfg.keep_path and phase.name == "prune" and cfg.method == "bar"
        was_open = [g.open_mask() for g in self.gate_list] if hold or guard else []
        last = self._last_carriers(was_open) if guard else []
        before = [float(self.gate_list[i].log_alpha.detach()[c]) for i, c in last]
        for opt in optimizers:
            opt.step()
        if hold:
            for g, mask in zip(self.gate_list, was_open):
                g.keep_open(mask)
        elif guard:
            self._keep_path(was_open, last, before)
        if phase.name == "prune" and cfg.log_alpha_ceiling:
            for g in self.gate_list:
                g.constrain(LOG_ALPHA_MAX)
        over = phase.name == "prune" and V >= b
        self.progress.steps_over_budget += int(over)
        loss_value = loss.item()
        elapsed = time.perf_counter() - t_start
        p = self.progress
        self._emit(StepRecord(
            step=p.step, phase=phase.name, epoch=p.global_epoch + 1, loss=loss_value, loss_data=data_loss.item(),
            loss_sparsity=ls.item() if ls is not None else 0.0, volume=float(V), budget_b=b,
            barrier_a=self.a if phase.name == "prune" and cfg.method == "bar" else float("nan"), barrier_f=f,
            volume_ratio=V / self.v0,
            lr=lr, gate_lr=cfg.gate_lr if phase.name == "prune" else 0.0,
            images_per_s=x.shape[0] / elapsed if elapsed > 0 else float("nan"), over_budget=over,
            time=self._wall(), barrier_b=b_wall))
        p.step += 1
        return loss_value

    def _last_carriers(self, was_open: list[Tensor]) -> list[tuple[int, int]]:
        """(gate, channel) of every layer down to one open channel whose closing would cut the input
        off from the head (connectivity.carries_input). Worked out again only when the open pattern
        changed: a few per run."""
        pattern = tuple(int(m.sum()) for m in was_open), tuple(int(m.nonzero()[0]) for m in was_open if m.sum() == 1)
        if pattern != self._carrier_pattern:
            self._carrier_pattern, self._carriers = pattern, []
            for i, (g, m) in enumerate(zip(self.gate_list, was_open)):
                if int(m.sum()) == 1:
                    c = int(m.nonzero()[0])
                    keep = float(g.log_alpha.detach()[c])
                    with torch.no_grad():
                        g.log_alpha[c] = -math.inf  # closed for the question only
                        cut = not carries_input(self.student)
                        g.log_alpha[c] = keep
                    if cut:
                        self._carriers.append((i, c))
        return self._carriers

    def _keep_path(self, was_open: list[Tensor], last: list[tuple[int, int]], before: list[float]) -> None:
        """The network stays in one piece (docs/method.md, the wall's item 6): the last channel of a
        layer every path crosses is fully open (test gate 1) and out of the sparsity pressure's reach
        (its log α does not fall; the data term may raise it), and closings that would still cut the
        input off from the head (two writers of a stream closing on one step, say) are undone: one
        channel back per gate, fully open, in forward order."""
        with torch.no_grad():
            for (i, c), value in zip(last, before):
                la = self.gate_list[i].log_alpha
                la[c] = max(float(la.detach()[c]), value)
                self.gate_list[i].lift(c)
            closed = [m & ~g.open_mask() for g, m in zip(self.gate_list, was_open)]
            if not any(bool(c.any()) for c in closed) or carries_input(self.student):
                return
            for g, c in zip(self.gate_list, closed):
                if bool(c.any()):  # one channel back, the most open of those that closed: it is the last one now
                    g.lift(int(torch.where(c, g.log_alpha.detach(), -math.inf).argmax()))
                    if carries_input(self.student):
                        return

    def _epoch_record(self, phase: str, train_loss: float) -> None:
        cfg = self.config
        distributed.check_in_sync(self.student if phase != "pretrain" else self.teacher)
        acc, test_loss = evaluate(self.student if phase != "pretrain" else self.teacher, self.data, self.device,
                                  cfg.channels_last)
        if phase == "pretrain":
            self.progress.teacher_accuracy = acc
        V = volume(self.student)
        kept = sum(g.num_open() for _, g in gates(self.student))
        total = sum(g.num_channels for _, g in gates(self.student))
        self._emit(EpochRecord(
            epoch=self.progress.global_epoch, phase=phase, step=self.progress.step, test_acc=acc, test_loss=test_loss,
            train_loss=train_loss, teacher_acc=self.progress.teacher_accuracy, volume=float(V), volume_ratio=V / self.v0,
            kept_channels=kept, total_channels=total, wall_seconds=self._wall(), gates=gate_snapshot(self.student)))
        self.last_accuracy = acc
        self.progress.last_accuracy = acc

    def _mac_ratio(self) -> float | None:
        """The pruned network's MACs ÷ the dense twin's (one example), as `bar export` builds it."""
        try:
            spec = self.data.spec
            shape = (spec.in_channels, *spec.image_size)
            student = copy.deepcopy(self.student).cpu().eval()
            return count_macs(materialize(student), shape) / count_macs(dense_twin(student), shape)
        except Exception:  # noqa: BLE001 - a model the builder does not know has no MAC count, not a failed run
            return None

    def summary(self, error: str | None = None) -> dict:
        cfg = self.config
        V = volume(self.student)
        pruned_acc = getattr(self, "last_accuracy", None)
        if pruned_acc is None:  # a continued run stopped before its first epoch here ended
            pruned_acc = self.progress.last_accuracy
        budgeted = cfg.method == "bar"  # l0 and magnitude have no budget: their factor is what they reached
        out = {
            "state": self.state, "error": error, "method": cfg.method, "model": cfg.model, "dataset": cfg.dataset,
            "budget": cfg.budget if budgeted else None,
            "pruning_factor": 1.0 / cfg.budget if budgeted else (self.v0 / V if V > 0 else None),
            "volume": V, "v0": self.v0, "volume_ratio": V / self.v0,
            "budget_met": V <= cfg.budget * self.v0 if budgeted else None,
            "teacher_accuracy": self.progress.teacher_accuracy, "pruned_accuracy": pruned_acc,
            "accuracy_drop": (self.progress.teacher_accuracy - pruned_acc)
            if (self.progress.teacher_accuracy is not None and pruned_acc is not None) else None,
            "steps": self.progress.step, "steps_over_budget": self.progress.steps_over_budget,
            "extra_prune_steps": self.progress.extra_steps,
            "kept_channels": sum(g.num_open() for _, g in gates(self.student)),
            "total_channels": sum(g.num_channels for _, g in gates(self.student)),
            "wall_seconds": self._wall(),
            "device": str(self.device), "threads": torch.get_num_threads(),
            "mac_ratio": self._mac_ratio(),
        }
        if cfg.method == "magnitude":
            out["target_mac_ratio"] = cfg.mac_ratio
        data = getattr(self, "data", None)
        out["health"] = health_findings(out, data.spec.num_classes if data is not None else None)
        return out
