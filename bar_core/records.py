"""What a run records, declared once: the trainer's records as typed, frozen dataclasses.

The trainer builds them and pushes them to its subscribers (the run folder, the dashboard's live
buffer, the CLI's progress bar); the run folder is read back into the same records for replay, so
one history builder (bar_core/history.py) serves live, continued and replayed runs.

    start   StartRecord    config, gated layers, V0, a, B·V0, phases, data, device   → config.json, layout.json
    phase   PhaseRecord    a phase begins                                           (not stored)
    step    StepRecord     one training step                                        → a metrics.csv row
    epoch   EpochRecord    test accuracy, V, gates after an epoch                   → an epochs.csv row, gates.npz
    status  StatusRecord   running / paused / stopped / continued                   → events.jsonl
    warning, error  MessageRecord  a one-line message                              → events.jsonl
    end     EndRecord      the summary                                              → summary.json

The metrics.csv and epochs.csv columns are the record fields in declaration order, so a new recorded
quantity is one field here (and an older folder without its column reads as NaN / None).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np


@dataclass(frozen=True, slots=True)
class StartRecord:
    """The run's set-up, emitted once when `run()` begins (again when a stopped run continues)."""
    kind: ClassVar[str] = "start"
    config: dict                     # TrainConfig.to_dict(); stored as config.json
    v0: int | None = None            # V0: the activation volume with every gate open
    a: float | None = None           # the barrier's start a
    budget_volume: float | None = None  # B·V0
    total_steps: int | None = None   # planned steps of all phases (extra prune steps not included)
    steps_per_epoch: int | None = None
    resumed_at: int = 0              # first step of this session (0 for a fresh run); not stored
    layers: list | None = None       # [{name, channels, area, height, width}] per gated layer
    teacher: str | None = None       # where the teacher came from
    data: dict | None = None         # {name, classes, in_channels, num_classes, image_size, train_size, test_size}
    device: str | None = None
    threads: int | None = None
    phases: list | None = None       # [{name, epochs, start_step, steps}]

    def layout(self) -> dict:
        """The layout.json object (None: a key an older run folder does not hold)."""
        values = ((k, getattr(self, k)) for k in LAYOUT_KEYS)
        return {k: v for k, v in values if v is not None}

    @classmethod
    def from_folder(cls, config: dict, layout: dict) -> StartRecord:
        return cls(config=config, **{k: layout[k] for k in LAYOUT_KEYS if k in layout})


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    kind: ClassVar[str] = "phase"
    phase: str                       # pretrain | prune | finetune
    step: int                        # its first step
    epochs: int


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One training step; its fields, in this order, are the metrics.csv columns."""
    kind: ClassVar[str] = "step"
    step: int                        # global step index, from 0
    phase: str
    epoch: int                       # the epoch this step belongs to, from 1
    loss: float                      # the objective trained on
    loss_data: float                 # cross-entropy or distillation loss
    loss_sparsity: float             # L_S, the expected volume (0 outside pruning)
    volume: float                    # V, hard count of surviving maps
    budget_b: float                  # b at this step (NaN outside pruning)
    barrier_a: float                 # a (NaN outside pruning)
    barrier_f: float                 # f(V, a, b), capped
    volume_ratio: float              # V / V0
    lr: float
    gate_lr: float                   # 0 outside pruning
    images_per_s: float              # this step's throughput
    over_budget: bool                # a prune step with V ≥ b
    time: float                      # training seconds since the run started (pauses excluded)
    barrier_b: float = math.nan      # the budget f was evaluated at, b(p + L/T) (NaN outside BAR pruning)


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """After an epoch (epoch 0: the network before pruning); the fields except `gates` are the
    epochs.csv columns, `gates` goes to gates.npz."""
    kind: ClassVar[str] = "epoch"
    epoch: int
    phase: str                       # start | pretrain | prune | finetune
    step: int                        # steps done when it was measured
    test_acc: float                  # with the test gates ẑ
    test_loss: float
    train_loss: float                # mean over the epoch's steps
    teacher_acc: float | None
    volume: float
    volume_ratio: float
    kept_channels: int
    total_channels: int
    wall_seconds: float
    # per gated layer: {"log_alpha", "prob_open", "test_gate"} float32 arrays; {} when not stored
    gates: dict = field(default_factory=dict, metadata={"column": False})

    def row(self) -> dict:
        """The epochs.csv row as a dict, a missing value (NaN) as None, as the CSV reads back."""
        values = ((c, getattr(self, c)) for c in EPOCH_COLUMNS)
        return {c: None if isinstance(v, float) and math.isnan(v) else v for c, v in values}


@dataclass(frozen=True, slots=True)
class StatusRecord:
    kind: ClassVar[str] = "status"
    state: str                       # paused | running | stopped | continued
    step: int

    def to_event(self) -> dict:
        """Its events.jsonl line."""
        return {"kind": self.kind, "step": self.step, "state": self.state}


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A note, a warning or an error, one line."""
    kind: str                        # info | warning | error
    message: str
    step: int | None = None

    def to_event(self) -> dict:
        """Its events.jsonl line."""
        return {k: v for k, v in (("kind", self.kind), ("step", self.step), ("message", self.message))
                if v is not None}


@dataclass(frozen=True, slots=True)
class EndRecord:
    kind: ClassVar[str] = "end"
    state: str                       # done | stopped | error
    summary: dict                    # Trainer.summary(); stored as summary.json


Record = StartRecord | PhaseRecord | StepRecord | EpochRecord | StatusRecord | MessageRecord | EndRecord
EventRecord = StatusRecord | MessageRecord


def columns(cls) -> tuple[str, ...]:
    """The CSV columns of a record class: its fields in order, less those stored elsewhere."""
    return tuple(f.name for f in fields(cls) if f.metadata.get("column", True))


METRIC_COLUMNS = columns(StepRecord)
EPOCH_COLUMNS = columns(EpochRecord)
LAYOUT_KEYS = tuple(f.name for f in fields(StartRecord) if f.name not in ("config", "resumed_at"))
GATE_KEYS = ("log_alpha", "prob_open", "test_gate")


def event_record(event: dict) -> EventRecord:
    """An events.jsonl line back as its record."""
    if event.get("kind") == "status":
        return StatusRecord(state=event.get("state"), step=event.get("step"))
    return MessageRecord(kind=event.get("kind"), message=event.get("message"), step=event.get("step"))


def freeze_gates(gates: dict) -> dict:
    """Mark an epoch's gate arrays read-only: they are shared with every reader without copying."""
    for arrays in gates.values():
        for arr in arrays.values():
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False
    return gates
