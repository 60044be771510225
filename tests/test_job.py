"""bar_core.job: one trainer in a daemon thread, the live buffer, replay from the run folder."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bar_core.trainer as trainer_mod
from bar_core.checkpoint import CheckpointError
from bar_core.config import ConfigError
from bar_core.data import DataError
from bar_core.history import LiveBuffer, snapshot_from_run
from bar_core.job import Job, JobBusy, JobManager
from bar_core.records import StartRecord, StepRecord
from bar_core.runs import RunFolderError, list_runs
from tests.helpers import tiny_config, wait_for


def job_threads():
    return [t for t in threading.enumerate() if t.name.startswith("bar-job-")]


def test_job_runs_to_the_end_and_replays_identically(runs_dir):
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(), name="full")
    assert job.thread.daemon
    assert job.join(120) and job.state == "done"
    live = job.snapshot()
    total = live.layout["total_steps"]
    assert live.n_steps >= total and live.progress["fraction"] == 1.0
    assert live.summary["state"] == "done" and live.error is None
    assert [e["epoch"] for e in live.epochs] == [g[0] for g in live.gates] == [1, 2, 3, 4]
    assert (runs_dir / "full" / "summary.json").is_file() and list_runs(runs_dir) == [runs_dir / "full"]
    # replay from the folder: the same history and gates
    past = snapshot_from_run(runs_dir / "full")
    assert past.state == "done" and past.n_steps == live.n_steps
    for col in ("step", "volume", "budget_b", "loss", "barrier_f"):
        np.testing.assert_allclose(past.steps[col].astype(float), live.steps[col].astype(float), rtol=1e-6)
    assert list(past.steps["phase"]) == list(live.steps["phase"])
    np.testing.assert_array_equal(past.over_budget_steps, live.over_budget_steps)
    assert past.phase_spans == live.phase_spans
    assert [s[0] for s in live.phase_spans] == ["pretrain", "prune", "finetune"]
    for (e1, g1), (e2, g2) in zip(live.gates, past.gates):
        assert e1 == e2
        np.testing.assert_allclose(g1["layer1.0.bn1"]["prob_open"], g2["layer1.0.bn1"]["prob_open"])


def test_pause_resume_stop_keeps_a_checkpoint(runs_dir):
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(prune_epochs=40, max_steps_per_epoch=10), name="pausing")
    wait_for(lambda: job.snapshot().n_steps >= 8, what="a few steps")
    job.pause()
    assert job.state == "paused"
    wait_for(lambda: job.trainer.state == "paused", what="the trainer to park")
    n = job.snapshot().n_steps
    time.sleep(0.5)
    assert job.snapshot().n_steps == n, "no step while paused"
    assert any(e.get("state") == "paused" for e in job.snapshot().events)
    job.resume()
    wait_for(lambda: job.snapshot().n_steps > n + 3, what="steps after resume")
    job.stop()
    assert job.state in ("stopping", "stopped")
    assert job.join(60) and job.state == "stopped"
    assert (runs_dir / "pausing" / "checkpoint.pt").is_file()
    assert json.loads((runs_dir / "pausing" / "summary.json").read_text())["state"] == "stopped"
    assert job.snapshot().summary["state"] == "stopped"


def test_a_stopped_run_continues_in_its_folder_with_its_history(runs_dir):
    """Continue from the app: same folder and settings, the live views start with the old steps,
    and the finished folder holds every step once, as an uninterrupted run would."""
    manager = JobManager(runs_dir)
    cfg = tiny_config(prune_epochs=3, max_steps_per_epoch=10)
    job = manager.start(cfg, name="halfway")
    wait_for(lambda: job.snapshot().n_steps >= 15, what="some steps")
    job.stop()
    assert job.join(60) and job.state == "stopped"
    stopped_at = job.trainer.step
    before = snapshot_from_run(runs_dir / "halfway")
    assert before.state == "stopped" and before.n_steps == stopped_at

    again = manager.start(None, continue_run=runs_dir / "halfway")
    assert again.name == "halfway" and again.config == cfg
    assert again.join(120) and again.state == "done"
    live = again.snapshot()
    total = live.layout["total_steps"]
    assert list(live.steps["step"][:stopped_at]) == list(range(stopped_at))  # the history came first
    np.testing.assert_allclose(live.steps["loss"][:stopped_at], before.steps["loss"], rtol=1e-6)
    assert live.steps["t"][stopped_at] >= live.steps["t"][stopped_at - 1]  # the clock goes on
    assert [e["epoch"] for e in live.epochs] == [g[0] for g in live.gates] == list(range(1, len(live.epochs) + 1))
    done = snapshot_from_run(runs_dir / "halfway")
    assert done.state == "done" and done.n_steps >= total
    assert list(done.steps["step"]) == list(range(done.n_steps))
    assert list_runs(runs_dir) == [runs_dir / "halfway"]


def test_continuing_refuses_finished_runs_and_folders_outside_the_runs_root(runs_dir, tmp_path):
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(), name="finished")
    assert job.join(120) and job.state == "done"
    with pytest.raises(RunFolderError, match="finished run"):
        manager.start(None, continue_run=runs_dir / "finished")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(RunFolderError, match="only runs under"):
        manager.start(None, continue_run=elsewhere)
    with pytest.raises(RunFolderError, match="only runs under"):
        manager.start(None, continue_run=runs_dir / ".." / "elsewhere")
    assert not manager.busy


def test_only_one_trainer_at_a_time(runs_dir):
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(prune_epochs=30, max_steps_per_epoch=10), name="first")
    assert manager.busy
    with pytest.raises(JobBusy):
        manager.start(tiny_config(), name="second")
    results = []

    def try_start():
        try:
            manager.start(tiny_config(), name=f"race-{threading.get_ident()}")
            results.append("started")
        except JobBusy:
            results.append("busy")
    racers = [threading.Thread(target=try_start) for _ in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert results == ["busy"] * 4
    assert len(job_threads()) == 1 and not (runs_dir / "second").exists()
    manager.shutdown()
    assert job.state == "stopped" and not manager.busy
    job2 = manager.start(tiny_config(), name="after")  # once stopped, a new job may start
    assert job2.join(120) and job2.state == "done"


def test_bad_input_raises_before_any_folder_exists(runs_dir, tmp_path):
    manager = JobManager(runs_dir)
    with pytest.raises(ConfigError, match="budget"):
        manager.start(tiny_config(budget=0.0), name="bad-budget")
    with pytest.raises(DataError):
        manager.start(tiny_config(dataset="cifar10", data_root=str(tmp_path / "nowhere")), name="no-data")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        manager.start(tiny_config(teacher=str(junk), dataset="synthetic"), name="bad-teacher")
    with pytest.raises(RunFolderError, match="not allowed"):
        manager.start(tiny_config(), name="../outside")
    assert list_runs(runs_dir) == [] and manager.job is None and not manager.busy
    assert not (runs_dir.parent / "outside").exists()


def test_nan_loss_ends_in_error_with_the_run_kept(runs_dir, monkeypatch):
    def nan_objective(data_loss, sparsity_loss, f, lam):
        return data_loss * float("nan")
    monkeypatch.setattr(trainer_mod, "bar_objective", nan_objective)
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(), name="nan")
    assert job.join(60)
    assert job.state == "error"
    snap = job.snapshot()
    assert "loss became nan" in snap.error
    assert (runs_dir / "nan" / "checkpoint.pt").is_file(), "the pretrain epoch's checkpoint is kept"
    past = snapshot_from_run(runs_dir / "nan")
    assert past.state == "error" and "loss became nan" in past.error
    assert not manager.busy


def test_crash_outside_the_trainer_loop_is_reported(runs_dir):
    class Exploding(trainer_mod.Trainer):
        def run(self):
            raise RuntimeError("disk on fire\nsecond line")
    job = JobManager(runs_dir).start(tiny_config(), name="boom", trainer_factory=Exploding)
    assert job.join(30) and job.state == "error"
    assert job.snapshot().error == "RuntimeError: disk on fire"


def test_live_buffer_downsamples_on_read_and_keeps_every_over_budget_step():
    buf = LiveBuffer()
    buf(StartRecord(config={}, v0=100.0, a=24.0, budget_volume=25.0, total_steps=20000, resumed_at=0, layers=[],
                    phases=[]))
    over = set()
    for i in range(20000):
        phase = "pretrain" if i < 5000 else "prune" if i < 15000 else "finetune"
        ob = phase == "prune" and i % 97 == 0
        if ob:
            over.add(i)
        buf(StepRecord(step=i, phase=phase, epoch=1 + i // 1000, loss=1.0, loss_data=1.0, loss_sparsity=0.0,
                       volume=100.0 - i / 400, budget_b=50.0, barrier_a=24.0, barrier_f=0.0, volume_ratio=1.0,
                       lr=1e-3, gate_lr=0.1, images_per_s=1000.0, over_budget=ob, time=0.05 * i))
    snap = buf.snapshot("running", max_points=1000)
    assert snap.n_steps == 20000
    assert len(snap.steps["step"]) <= 1000 and snap.steps["step"][0] == 0 and snap.steps["step"][-1] == 19999
    assert set(snap.over_budget_steps.tolist()) == over
    assert snap.phase_spans == [("pretrain", 0, 5000), ("prune", 5000, 15000), ("finetune", 15000, 20000)]
    assert snap.progress["step"] == 20000
    # a reader's copy is not changed by later records
    before = snap.steps["volume"].copy()
    buf(StepRecord(step=20000, phase="finetune", epoch=21, loss=1.0, loss_data=1.0, loss_sparsity=0.0, volume=0.0,
                   budget_b=50.0, barrier_a=24.0, barrier_f=0.0, volume_ratio=0.0, lr=1e-3, gate_lr=0.0,
                   images_per_s=1.0, over_budget=False, time=1000.0))
    np.testing.assert_array_equal(snap.steps["volume"], before)


def test_runs_root_defaults_to_env(runs_dir):
    assert JobManager().runs_root == runs_dir
    assert Job(tiny_config()).runs_root == runs_dir


def test_interpreter_exit_stops_the_job_cleanly(runs_dir):
    """A server shut down mid-run (SIGTERM → normal exit) stops the trainer after its step, which
    saves a checkpoint, instead of killing the daemon thread inside a torch op (an abort)."""
    import subprocess
    import sys
    code = ("import time\nfrom bar_core.job import JobManager\nfrom tests.helpers import tiny_config\n"
            f"job = JobManager({str(runs_dir)!r}).start(tiny_config(prune_epochs=50, max_steps_per_epoch=10), "
            "name='exit')\n"
            "while job.snapshot().n_steps < 5: time.sleep(0.05)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((runs_dir / "exit" / "summary.json").read_text())
    assert summary["state"] == "stopped" and (runs_dir / "exit" / "checkpoint.pt").is_file()
