"""A series: named runs with their own settings, trained one after another as one job.

The app's lesson "Why the barrier?" is one: the quick demo with BAR, then the same gates, data and
epochs with L0, so a class sees the two volume curves side by side. Each run is an ordinary run folder
directly in the runs folder (the runs table, Compare and replay treat it as any other run); a
`SweepJob` trains the series (`plan` duck-types `SweepPlan`: runs, their status, their folders).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from .catalog import run_row
from .config import TrainConfig
from .runs import RunFolderError, holds_run, safe_run_dir
from .sweep import SweepRun


class _NoLock:
    def release(self) -> None:
        pass


class SeriesPlan:
    """`runs`: (name, settings) pairs, trained in order into `runs_root`; every name must be free."""

    kind = "series"

    def __init__(self, runs_root: str | os.PathLike, runs: Sequence[tuple[str, TrainConfig]], title: str):
        self.folder = Path(runs_root)
        self.name = title
        self.runs = [SweepRun(i, name, cfg.budget, cfg.seed, cfg.validate()) for i, (name, cfg) in enumerate(runs)]
        for r in self.runs:
            safe_run_dir(self.folder, r.name)  # a name that would leave the runs folder is refused here
        self.exists, self.needs_writing = True, False

    def create(self) -> None:
        pass  # each run creates its own folder

    def lock(self) -> _NoLock:
        return _NoLock()  # the job manager runs one job at a time

    def run_dir(self, run: SweepRun) -> Path:
        return self.folder / run.name

    def run_status(self, run: SweepRun) -> str:
        if holds_run(self.run_dir(run)):
            raise RunFolderError(f"a run named {run.name!r} already exists in {str(self.folder)!r}")
        return "start"

    def check_runs(self) -> dict[str, str]:
        return {r.name: self.run_status(r) for r in self.runs}

    def rows(self) -> list:
        return [run_row(self.run_dir(r), name=r.name) for r in self.runs if holds_run(self.run_dir(r))]

    def write_csv(self) -> None:
        pass  # no sweep folder: the runs table lists the runs


def series_names(prefix: str, labels: Sequence[str]) -> list[str]:
    """Run names for one series started now: <prefix>-<time>-<label>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return [f"{prefix}-{stamp}-{label}" for label in labels]


WHY_THE_BARRIER = "Why the barrier?"


def why_the_barrier(cfg: TrainConfig, names: Sequence[str] | None = None) -> list[tuple[str, TrainConfig]]:
    """The lesson's two runs: `cfg` with BAR, then the same gates, data, λ and epochs with L0 (no
    barrier, no budget: the settings only BAR uses go back to their defaults)."""
    from .config import SETTINGS

    bar = cfg.replace(method="bar")
    l0 = bar.replace(method="l0", **{s.name: s.default for s in SETTINGS if not s.used_by("l0")})
    bar_name, l0_name = names or series_names("why", ["bar", "l0"])
    return [(bar_name, bar.validate()), (l0_name, l0.validate())]
