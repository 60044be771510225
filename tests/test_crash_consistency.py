"""A run cut short — stopped mid-epoch, killed with SIGKILL at any moment, out of disk — continues to
exactly the run it would have been: every step once, the same V trajectory, the same outcome (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
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


CLI_RUN = ["--dataset", "synthetic", "--teacher", "none", "--pretrain-epochs", "1", "--prune-epochs", "2",
           "--finetune-epochs", "1", "--max-steps-per-epoch", "5", "--batch-size", "32", "--test-limit", "200",
           "--threads", "1", "--gate-lr", "0.05", "--lam", "5e-5", "--budget", "0.25", "--extra-prune-steps", "12",
           "--quiet"]

# Runs `bar train` with one moment held open: the process writes MARKER there and sleeps until the
# test kills it. Only the waiting is added; what is written up to that moment is the real code's.
HARNESS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import bar_core.runs as runs, bar_core.trainer as trainer
    from bar_core.checkpoint import atomic_write
    moment, at, marker, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

    def hold():
        marker.write_text(moment)
        time.sleep(600)

    if moment == "mid-step":          # inside a prune step: forward done, no backward or update yet
        objective = trainer.bar_objective
        def held(*a, **k):
            if trainer_ref[0].progress.step == at:
                hold()
            return objective(*a, **k)
        trainer.bar_objective = held
        trainer_ref = []
        init = trainer.Trainer.__init__
        def keep(self, *a, **k):
            init(self, *a, **k)
            trainer_ref.append(self)
        trainer.Trainer.__init__ = keep
    elif moment == "mid-checkpoint":  # the at-th checkpoint half on disk, not yet renamed into place
        count = [0]
        def save(obj, path):
            count[0] += 1
            if count[0] == at:
                def half(f):
                    import torch
                    torch.save(obj, f)
                    f.flush()
                    f.truncate(f.tell() // 2)
                    hold()
                atomic_write(path, half)
            return runs.__dict__["_real_save"](obj, path)
        runs.__dict__["_real_save"] = runs.save_atomic
        runs.save_atomic = save
    elif moment == "mid-epoch-record":  # half of epoch at's epochs.csv row written
        epoch = runs.RunFolder._epoch
        def torn(self, record):
            if record.epoch == at:
                with open(self.path / "epochs.csv", "a") as f:
                    f.write(f"{record.epoch},{record.phase},{record.step},0.1")
                hold()
            return epoch(self, record)
        runs.RunFolder._epoch = torn
    elif moment == "mid-metrics-row":   # step at's metrics.csv row cut inside its step number
        write = runs.RunFolder.write_record
        def torn(self, record):
            if record.kind == "step" and record.step == at:
                self._metrics.write(str(at)[:1])
                self._metrics.flush()
                hold()
            return write(self, record)
        runs.RunFolder.write_record = torn
    from bar_core.cli import main
    sys.exit(main(["train", *sys.argv[5:], "--out", out]))
""")


@pytest.fixture(scope="module")
def unbroken_cli(tmp_path_factory) -> Path:
    from bar_core.cli import main
    path = tmp_path_factory.mktemp("unbroken-cli") / "run"
    assert main(["train", *CLI_RUN, "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize("moment,at", [("mid-step", 8), ("mid-checkpoint", 2), ("mid-epoch-record", 2),
                                       ("mid-metrics-row", 12)])
def test_sigkill_at_any_moment_then_resume_equals_the_unbroken_run(unbroken_cli, tmp_path, moment, at):
    from bar_core.cli import main
    out, marker = tmp_path / "run", tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, moment, str(at), str(marker), str(out), *CLI_RUN],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=120, what=f"the run to reach {moment}")
        assert proc.poll() is None, f"the run ended (code {proc.returncode}) before {moment}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (out / "checkpoint.pt").is_file() and not (out / "summary.json").exists()
    if moment == "mid-checkpoint":
        assert any(p.name.startswith(".checkpoint.pt.") for p in out.iterdir()), "the cut write's temp file"
    assert main(["train", "--resume", "--out", str(out), "--quiet"]) == 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "cut writes are cleaned on resume"
    assert_same_run(unbroken_cli, out)


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs: a disk that can be filled in a moment (needs root; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()[:100]}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk up to `leave` bytes free."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave + 65536:
                f.write(b"\0" * 65536)
                f.flush()
            f.write(b"\0" * max(os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - leave, 0))
            f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_stops_the_run_with_a_message_and_resume_continues_it(unbroken, small_disk):
    from bar_core.checkpoint import load_file

    out = small_disk / "run"
    cfg = config()
    trainer = Trainer(cfg, run_folder=RunFolder.create(out, cfg))
    filled = []
    trainer.subscribe(lambda r: filled.append(fill(small_disk)) if r.kind == "epoch" and r.epoch == 2 else None)
    summary = trainer.run()
    assert summary["state"] == "error", summary
    assert summary["error"].startswith("the disk is full writing ") and "checkpoint.pt" in summary["error"]
    assert "--resume" in summary["error"]
    assert load_file(out / "checkpoint.pt")["progress"]["step"] == 5, "the last good checkpoint (epoch 1) is intact"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    filled[0].unlink()  # space again
    assert resume(out)["state"] == "done"
    assert_same_run(unbroken, out)


def test_the_cli_on_a_full_disk_says_so_in_one_line(small_disk):
    filler = fill(small_disk, leave=400_000)  # room for the run's small files, not for a checkpoint
    out = small_disk / "run"
    r = subprocess.run([sys.executable, "-m", "bar_core", "train", *CLI_RUN, "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert "state:             error (the disk is full writing " in r.stdout, r.stdout
    filler.unlink()
    assert not (out / "checkpoint.pt").exists()
    # with space again the run starts over cleanly (nothing to resume from yet)
    r = subprocess.run([sys.executable, "-m", "bar_core", "train", *CLI_RUN, "--out", str(out), "--overwrite"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_sigterm_to_the_cli_saves_a_checkpoint_and_the_summary_like_ctrl_c(tmp_path):
    from bar_core.checkpoint import load_file

    out = tmp_path / "run"
    slow = [*CLI_RUN, "--max-steps-per-epoch", "400"]  # the later flag wins: long epochs to stop inside
    proc = subprocess.Popen([sys.executable, "-m", "bar_core", "train", *slow, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "metrics.csv").is_file() and len((out / "metrics.csv").read_text().splitlines()) > 40,
                 timeout=120, what="40 steps")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "SIGTERM: stopping after this step" in stderr and "Traceback" not in stderr
    assert "state:             stopped" in stdout
    summary = json.loads((out / "summary.json").read_text())
    steps = len(pd.read_csv(out / "metrics.csv"))
    assert summary["state"] == "stopped" and summary["steps"] == steps
    assert load_file(out / "checkpoint.pt")["progress"]["step"] == steps, "the checkpoint is at the last step"
    events = [json.loads(l) for l in (out / "events.jsonl").read_text().splitlines()]
    assert {"kind": "status", "step": steps, "state": "stopped"} in events
    assert not (out / "running.json").exists()
