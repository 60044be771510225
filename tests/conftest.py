"""Shared fixtures (kept small): one torch thread, a private runs folder and a tiny config."""
from __future__ import annotations

import pytest
import torch

from bar_core.config import TrainConfig


def tiny_config(**changes) -> TrainConfig:
    """Seconds on one CPU thread: synthetic data, no teacher to load, a few capped epochs."""
    base = dict(dataset="synthetic", teacher="none", pretrain_epochs=1, prune_epochs=2, finetune_epochs=1,
                max_steps_per_epoch=5, batch_size=32, test_limit=200, threads=1, gate_lr=0.2, lam=5e-5,
                extra_prune_steps=20)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """BAR_RUNS_DIR pointed at a fresh folder, so no test writes under the repository's runs/."""
    path = tmp_path / "runs"
    monkeypatch.setenv("BAR_RUNS_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """In-process tests use one torch thread: with anything else busy on a 2-core machine a second
    OpenMP thread makes small ops wait at a barrier (measured up to 100x slower). Benchmarks and the
    subprocesses of the end-to-end tests keep their own setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
