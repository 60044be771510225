"""A run cut short — stopped mid-epoch, killed with SIGKILL at any moment, out of disk — continues to
exactly the run it would have been: every step once, the same V trajectory, the same outcome (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bar_core.runs import RunFolder
from bar_core.trainer import Trainer
from tests.helpers import tiny_config, wait_for

ROOT = Path(__file__).resolve().parents[1]
TIMING = ["time", "images_per_s"]           # the clock differs between sessions, nothing else may
SUMMARY_TIMING = {"wall_seconds"}


def config(**changes):
    # budget 0.25 with a slow gate lr leaves V above B when the schedule ends: extra prune steps happen
    return tiny_config(**{"budget": 0.25, "gate_lr": 0.05, "extra_prune_steps": 12, **changes})


def train(path: Path, cfg, stop_at: int | None = None) -> dict:
    trainer = Trainer(cfg, run_folder=RunFolder.create(path, cfg))
    if stop_at is not None:
        trainer.subscribe(lambda r: trainer.stop() if r.kind == "step" and r.step == stop_at else None)
    return trainer.run()


def resume(path: Path) -> dict:
    folder, cfg, state = RunFolder.open_for_resume(path)
    trainer = Trainer(cfg).prepare()
    trainer.load_checkpoint_state(state)
    trainer.run_folder = folder
    return trainer.run()


def outcome(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    metrics = pd.read_csv(path / "metrics.csv").drop(columns=TIMING)
    epochs = pd.read_csv(path / "epochs.csv").drop(columns=["wall_seconds"])
    with np.load(path / "gates.npz") as z:
        gates = {k: z[k].copy() for k in z.files}
    summary = {k: v for k, v in json.loads((path / "summary.json").read_text()).items() if k not in SUMMARY_TIMING}
    return metrics, epochs, gates, summary


def assert_same_run(a: Path, b: Path) -> None:
    ma, ea, ga, sa = outcome(a)
    mb, eb, gb, sb = outcome(b)
    assert list(mb["step"]) == list(range(len(mb))), "every step exactly once, in order"
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    pd.testing.assert_frame_equal(ea, eb, check_exact=True)
    assert ga.keys() == gb.keys() and all(np.array_equal(ga[k], gb[k]) for k in ga)
    assert sa == sb


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("unbroken") / "run"
    summary = train(path, config())
    assert summary["state"] == "done" and summary["extra_prune_steps"] > 0, summary
    return path


def test_the_reference_run_has_every_phase_and_extra_prune_steps(unbroken):
    phases = set(pd.read_csv(unbroken / "metrics.csv")["phase"])
    assert phases == {"pretrain", "prune", "finetune"}


@pytest.mark.parametrize("where", ["pretrain", "prune", "extra", "finetune"])
def test_a_mid_epoch_stop_then_resume_equals_the_unbroken_run(unbroken, tmp_path, where):
    metrics = pd.read_csv(unbroken / "metrics.csv")
    prune = metrics.index[metrics["phase"] == "prune"]
    extra_from = int(json.loads((unbroken / "summary.json").read_text())["steps"]) - 5 - int(
        json.loads((unbroken / "summary.json").read_text())["extra_prune_steps"])
    at = {"pretrain": 2, "prune": int(prune[0]) + 2, "extra": extra_from + 3,
          "finetune": int(metrics.index[metrics["phase"] == "finetune"][0]) + 2}[where]
    path = tmp_path / "run"
    assert train(path, config(), stop_at=at)["state"] == "stopped"
    assert len(pd.read_csv(path / "metrics.csv")) == at + 1, "stopped after that step"
    assert resume(path)["state"] == "done"
    assert_same_run(unbroken, path)
