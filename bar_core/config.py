"""Every knob of a BAR run in one dataclass, with the validation that the CLI and the app share."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .barrier import DEFAULT_CAP, MARGIN, SCHEDULES, TAU
from .hard_concrete import BETA, GAMMA, ZETA


class ConfigError(ValueError):
    """A bad setting. The message is one line that names the value and what is allowed."""


@dataclass
class TrainConfig:
    # What to prune, on what
    model: str = "resnet8"
    dataset: str = "fashion-mnist-subset"
    data_root: str | None = None
    download: bool = False          # only ever True when the user asks for it
    train_limit: int | None = None  # use only the first N training images (fast checks)
    test_limit: int | None = None
    augment: bool = False
    # The teacher: "default" = the shipped checkpoint for (model, dataset), a path, or "none" to pretrain here
    teacher: str = "default"
    # Budget and schedule
    budget: float = 0.25            # B: final V/V0, in (0, 1]; pruning factor 1/B
    schedule: str = "sigmoid"
    schedule_k: float | None = None  # steepness; None = 10 (sigmoid) / 4 (exp)
    margin: float = MARGIN
    tau: float = TAU
    barrier_cap: float = DEFAULT_CAP  # the finite wall (barrier.py says why 1e4)
    # Loss
    lam: float = 2e-6               # λ, in the units of the area-weighted volume
    weighted_volume: bool = True    # L_S area-weighted (BAR) or a plain count of P(z>0)
    kd: bool = True
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9
    # Gates
    gate_lr: float = 0.2   # a gate must travel from +3 to -ln 11; fast enough to follow b in a short demo
    gate_init: float = 3.0
    beta: float = BETA
    gamma: float = GAMMA
    zeta: float = ZETA
    # Phases and optimisation
    pretrain_epochs: int = 10       # only used when teacher == "none"
    prune_epochs: int = 6
    # 8 fine-tune epochs at lr 2e-3 (cosine): accuracy drop vs the teacher over seeds 0-4 was
    # 0.25-1.45 points (mean 1.0); 4 epochs at 1e-3 gave 0.95-2.90 (mean 2.1). About 13 s more.
    finetune_epochs: int = 8
    extra_prune_steps: int = 200    # if V is still above B·V0 when pruning ends, keep pruning this long at most
    batch_size: int = 128
    lr: float = 1e-3
    finetune_lr: float = 2e-3
    weight_decay: float = 5e-4
    max_steps_per_epoch: int | None = None
    # Machine
    seed: int = 0
    device: str = "auto"            # auto | cpu | cuda
    threads: int | None = None
    channels_last: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes carried into config.json

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        """Raise ConfigError on the first bad value; return self so calls chain."""
        from .data import DATASETS
        from .models import MODELS

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        def finite(name: str) -> float:
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                 f"{name} must be a finite number, got {v!r}")
            return float(v)

        need(self.model in MODELS, f"unknown model {self.model!r}; allowed: {', '.join(MODELS)}")
        need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; allowed: {', '.join(DATASETS)}")
        b = finite("budget")
        need(0.0 < b <= 1.0, f"budget must be in (0, 1] (a fraction of the initial volume), got {self.budget!r}")
        need(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.schedule_k is not None:
            need(finite("schedule_k") > 0, f"schedule_k must be > 0, got {self.schedule_k!r}")
        for name in ("lam", "margin", "tau", "weight_decay"):
            need(finite(name) >= 0, f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("lr", "finetune_lr", "gate_lr", "kd_temperature", "barrier_cap", "beta"):
            need(finite(name) > 0, f"{name} must be > 0, got {getattr(self, name)!r}")
        need(0.0 <= finite("kd_alpha") <= 1.0, f"kd_alpha must be in [0, 1], got {self.kd_alpha!r}")
        need(finite("gamma") < 0.0, f"gamma must be < 0, got {self.gamma!r}")
        need(finite("zeta") > 1.0, f"zeta must be > 1, got {self.zeta!r}")
        finite("gate_init")
        from .hard_concrete import closed_threshold
        need(self.gate_init > closed_threshold(self.gamma, self.zeta),
             f"gate_init must keep every gate open at the start (> {closed_threshold(self.gamma, self.zeta):.4f} "
             f"for these gamma, zeta), got {self.gate_init!r}")
        for name in ("pretrain_epochs", "prune_epochs", "finetune_epochs", "extra_prune_steps"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{name} must be an integer >= 0, got {v!r}")
        need(self.prune_epochs >= 1, f"prune_epochs must be >= 1, got {self.prune_epochs!r}")
        for name in ("batch_size",):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        for name in ("train_limit", "test_limit", "max_steps_per_epoch", "threads"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                 f"{name} must be an integer >= 1 or unset, got {v!r}")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"device must be auto, cpu or cuda, got {self.device!r}")
        need(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
             f"seed must be an integer >= 0, got {self.seed!r}")
        need(isinstance(self.teacher, str) and self.teacher != "", "teacher must be 'default', 'none' or a path")
        return self
