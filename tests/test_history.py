"""One history for live, continued and replayed runs: what the live buffer held at the end of a run
is what replaying its folder gives.

Compared: every RunSnapshot field but `t`, `source` and `version`. `t` is each step's clock: live,
the buffer's wall clock when the step arrived; replayed, the `time` the trainer recorded; both are
checked to be non-decreasing, not equal. `source` is "live" or the folder and `version` counts
records (live) or steps (replay) by design. Floats that went through metrics.csv, epochs.csv or
JSON are compared to 1e-12 relative (exact with the pinned pandas); everything else exactly.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import bar_core.trainer as trainer_mod
from bar_core.config import TrainConfig
from bar_core.history import LiveBuffer, snapshot_from_run
from bar_core.job import JobManager
from bar_core.runs import RunFolder
from bar_core.trainer import Trainer
from tests.helpers import tiny_config, wait_for


def same(a, b, where="snapshot"):
    """a == b, recursively; floats to 1e-12 relative (NaN equals NaN), arrays exactly."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert isinstance(b, (int, float)), f"{where}: {a!r} vs {b!r}"
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0), f"{where}: {a!r} vs {b!r}"
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} vs {b!r}"


def assert_replay_equals_live(live, past):
    assert live.source == "live" and past.source == past.run_dir == live.run_dir
    assert set(live.steps) == set(past.steps)
    for name in live.steps:
        if name != "t":
            same(live.steps[name], past.steps[name], f"steps[{name!r}]")
    for snap in (live, past):
        assert len(snap.steps["t"]) == len(snap.steps["step"]) and np.all(np.diff(snap.steps["t"]) >= 0)
    for name in ("state", "n_steps", "over_budget_steps", "phase_spans", "epochs", "gates", "events", "summary",
                 "error", "progress", "layout", "config"):
        same(getattr(live, name), getattr(past, name), name)
    assert live.has_steps and live.v0 == past.v0 and live.warnings == past.warnings


def test_replay_of_a_finished_run_equals_what_the_live_buffer_held(runs_dir):
    # lam high enough that the schedule ends above the budget: warnings and extra prune steps are recorded
    job = JobManager(runs_dir).start(tiny_config(lam=5e-4), name="full")
    assert job.join(120) and job.state == "done"
    live = job.snapshot()
    past = snapshot_from_run(runs_dir / "full")
    assert_replay_equals_live(live, past)
    assert [s[0] for s in live.phase_spans] == ["pretrain", "prune", "finetune"]
    assert [e for e, _ in live.gates] == [e["epoch"] for e in live.epochs] == [1, 2, 3, 4]
    # downsampled the same way too
    small = snapshot_from_run(runs_dir / "full", max_points=7)
    assert_replay_equals_live(job.snapshot(max_points=7), small)
    assert len(small.steps["step"]) <= 7 < small.n_steps
    assert live.warnings and len(live.over_budget_steps) > 0, "the comparison covered events and V ≥ b steps"


def test_a_continued_run_ends_with_the_snapshot_of_its_folder(runs_dir):
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(prune_epochs=3, max_steps_per_epoch=10), name="halfway")
    wait_for(lambda: job.snapshot().n_steps >= 8, what="some steps")
    job.pause()  # a pause before the stop leaves status events in the folder
    wait_for(lambda: job.trainer.state == "paused", what="the trainer to park")
    job.resume()
    wait_for(lambda: job.snapshot().n_steps >= 15, what="steps after resume")
    job.stop()
    assert job.join(60) and job.state == "stopped"
    stopped_at = job.trainer.step
    assert_replay_equals_live(job.snapshot(), snapshot_from_run(runs_dir / "halfway"))

    again = manager.start(None, continue_run=runs_dir / "halfway")
    assert again.join(120) and again.state == "done"
    live = again.snapshot()
    assert live.steps["step"][stopped_at - 1] == stopped_at - 1 and live.n_steps == live.steps["step"][-1] + 1
    assert [e["state"] for e in live.events if e["kind"] == "status"][:2] == ["paused", "running"]
    assert_replay_equals_live(live, snapshot_from_run(runs_dir / "halfway"))


def test_a_run_continued_after_an_error_drops_the_error_and_what_followed_its_checkpoint(tmp_path, monkeypatch):
    """The CLI's --resume path (RunFolder.open_for_resume + Trainer), fed to a LiveBuffer as a
    continued job's: the failed step's error is undone with the steps after the checkpoint."""
    cfg = TrainConfig(dataset="synthetic", teacher="none", pretrain_epochs=1, prune_epochs=2, finetune_epochs=1,
                      batch_size=32, max_steps_per_epoch=6, test_limit=100, threads=1, extra_prune_steps=0)
    real, calls = trainer_mod.bar_objective, {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        return real(*args) * float("nan") if calls["n"] == 9 else real(*args)  # once, in the 2nd prune epoch

    monkeypatch.setattr(trainer_mod, "bar_objective", poisoned)
    t = Trainer(cfg).prepare()
    t.run_folder = RunFolder.create(tmp_path / "run", cfg)
    assert t.run()["state"] == "error"
    assert snapshot_from_run(tmp_path / "run").error.startswith("loss became nan")

    folder, cfg2, state = RunFolder.open_for_resume(tmp_path / "run")
    t2 = Trainer(cfg2).prepare()
    t2.load_checkpoint_state(state)
    t2.run_folder = folder
    buffer = LiveBuffer(history=tmp_path / "run")
    t2.subscribe(buffer)
    assert t2.run()["state"] == "done"
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["kind"] == "error"]
    past = snapshot_from_run(tmp_path / "run")
    assert past.state == "done" and past.error is None
    assert list(past.steps["step"]) == list(range(past.n_steps))
    live = buffer.snapshot(t2.state, run_dir=str(tmp_path / "run"))
    assert_replay_equals_live(live, past)
