"""Budget sweeps (bar_core/sweep.py, `bar sweep`, JobManager.start_sweep): real runs on tiny data.

One folder per (budget, seed), sweep.json and sweep.csv; the same command again skips done runs and
resumes stopped ones; Ctrl-C stops with exit code 130; --workers gives the same rows; bad input is
refused with one line, exit code 2 and nothing created; the sweep job trains the runs one after another.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bar_core.catalog import COLUMNS, is_sweep, scan_runs
from bar_core.cli import main
from bar_core.config import ConfigError
from bar_core.job import USER_ERRORS, JobBusy, JobManager
from bar_core.sweep import check_budgets, parse_budgets, parse_seeds, run_name
from tests.helpers import tiny_config, wait_for

REPO = Path(__file__).resolve().parent.parent
# Seconds per run on one thread; few extra prune steps, since a 3-step prune phase never reaches the budget.
TINY = ["--dataset", "synthetic", "--teacher", "none", "--pretrain-epochs", "1", "--prune-epochs", "1",
        "--finetune-epochs", "1", "--max-steps-per-epoch", "3", "--batch-size", "32", "--test-limit", "200",
        "--threads", "1", "--extra-prune-steps", "5", "--quiet"]
SUMMARY_KEYS = ("state", "volume_ratio", "teacher_accuracy", "pruned_accuracy", "steps_over_budget", "steps",
                "wall_seconds")


def sweep(out, budgets="1/2,1/4", *extra):
    return main(["sweep", "--budgets", budgets, "--out", str(out), *TINY, *extra])


def read_csv(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "sweep.csv")


def one_line_error(err: str, *needles) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory):
    """A finished two-budget sweep, trained once for the tests that read it."""
    out = tmp_path_factory.mktemp("sweeps") / "s"
    assert sweep(out) == 0
    return out


# ---- the library's parsers ----------------------------------------------------------------------
def test_parsers_and_names():
    assert parse_budgets("1/2, 1/4,0.125,1/16") == [0.5, 0.25, 0.125, 0.0625]
    assert parse_seeds("0,1, 7") == [0, 1, 7]
    assert [run_name(b, s) for b, s in ((0.5, 0), (0.125, 1), (1 / 16, 0), (1.0, 3))] == \
        ["b0.5-s0", "b0.125-s1", "b0.0625-s0", "b1-s3"]
    assert check_budgets([0.5, 1]) == [0.5, 1.0]
    for bad in ([], [0.5, 0.5], [0.0], [float("nan")], [True], [1 / 3, 1 / 3 + 1e-9]):
        with pytest.raises(ConfigError):
            check_budgets(bad)


# ---- a sweep and its files -----------------------------------------------------------------------
def test_sweep_writes_its_runs_json_and_csv(done_sweep):
    data = json.loads((done_sweep / "sweep.json").read_text())
    assert data["budgets"] == [0.5, 0.25] and data["seeds"] == [0]
    assert [r["name"] for r in data["runs"]] == ["b0.5-s0", "b0.25-s0"]
    assert "budget" not in data["base"] and data["base"]["dataset"] == "synthetic" and data["base"]["lam"] == 2e-6
    assert data["options"]["workers"] == 1 and data["options"]["budgets"] == "1/2,1/4"
    assert is_sweep(done_sweep)
    frame = read_csv(done_sweep)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 2
    for _, row in frame.iterrows():
        name = row["name"].split("/")[1]
        summary = json.loads((done_sweep / name / "summary.json").read_text())
        config = json.loads((done_sweep / name / "config.json").read_text())
        assert row["name"] == f"s/{name}" and row["sweep"] == "s"
        assert (row["budget"], row["seed"]) == (config["budget"], config["seed"]) and name == run_name(
            config["budget"], config["seed"])
        for key in SUMMARY_KEYS:
            assert row[key] == summary[key], key
    # the runs table lists them inside the sweep
    assert {r.name for r in scan_runs(done_sweep.parent)} == {"s/b0.5-s0", "s/b0.25-s0"}


def test_the_same_command_skips_done_runs_and_new_budgets_extend(done_sweep, tmp_path, capsys):
    out = tmp_path / "s"
    shutil.copytree(done_sweep, out)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*") if p.name in ("metrics.csv", "summary.json")}
    capsys.readouterr()
    assert sweep(out) == 0
    err = capsys.readouterr().err
    assert err.count("done before, skipped") == 2 and "starting" not in err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "nothing retrained"
    # a new budget: only its run trains, and sweep.json and sweep.csv grow by it
    assert sweep(out, "1/2,1/4,1/8") == 0
    err = capsys.readouterr().err
    assert "adding 1 run(s) (b0.125-s0)" in err and err.count("skipped") == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert [r["name"] for r in json.loads((out / "sweep.json").read_text())["runs"]] == \
        ["b0.5-s0", "b0.25-s0", "b0.125-s0"]
    assert list(read_csv(out)["state"]) == ["done"] * 3
    # other settings are refused, and nothing changes
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert sweep(out, "1/2", "--lam", "1e-5") == 2
    one_line_error(capsys.readouterr().err, "other settings", "lam=2e-06 there, 1e-05 here")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_workers_give_the_same_rows(done_sweep, tmp_path):
    out = tmp_path / "par"
    assert sweep(out, "1/2,1/4", "--workers", "2") == 0
    par, seq = read_csv(out), read_csv(done_sweep)
    keys = ["budget", "seed", "state", "volume_ratio", "pruned_accuracy", "teacher_accuracy", "steps"]
    # one thread per run either way: a CPU run repeats exactly
    pd.testing.assert_frame_equal(par[keys], seq[keys])
    assert [n.split("/")[1] for n in par["name"]] == [n.split("/")[1] for n in seq["name"]]


def test_ctrl_c_stops_with_130_and_the_same_command_finishes(tmp_path):
    out = tmp_path / "s"
    longer = [*TINY, "--prune-epochs", "4", "--max-steps-per-epoch", "8"]  # long enough to be interrupted
    cmd = ["sweep", "--budgets", "1/2,1/4", "--out", str(out), *longer]
    proc = subprocess.Popen([sys.executable, "-m", "bar_core", *cmd], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "b0.5-s0" / "checkpoint.pt").is_file() or proc.poll() is not None, timeout=120,
                 what="the first run's first checkpoint")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopped; checkpoint kept" in err and "Traceback" not in err
    first = out / "b0.5-s0"
    assert json.loads((first / "summary.json").read_text())["state"] == "stopped"
    assert (first / "checkpoint.pt").is_file() and not (out / "b0.25-s0").exists()
    assert list(read_csv(out)["state"]) == ["stopped"]
    assert main(cmd) == 0  # the same command resumes the first run and trains the second
    frame = read_csv(out)
    assert list(frame["state"]) == ["done", "done"]
    steps = pd.read_csv(first / "metrics.csv")["step"].tolist()
    assert steps == list(range(len(steps))) and len(steps) == frame["steps"][0], "every step once"


# ---- bad input: one line, exit code 2, nothing written ------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (["--budgets", "1/2,0"], ["budget 0 ", "(0, 1]"]),
    (["--budgets", "1.5"], ["1.5", "(0, 1]"]),
    (["--budgets", "abc"], ["'abc'", "not a number"]),
    (["--budgets", "1/2,,1/4"], ["'1/2,,1/4'", "empty item"]),
    (["--budgets", "1/2,0.5"], ["0.5 is listed twice"]),
    (["--budgets", "1/2", "--workers", "0"], ["--workers", "0"]),
    (["--budgets", "1/2", "--seeds", "0,-1"], ["seed -1", ">= 0"]),
    (["--budgets", "1/2", "--seeds", "x"], ["'x'", "integer"]),
    (["--budgets", "1/2", "--seeds", "1,1"], ["seed 1 is listed twice"]),
    (["--budgets", "1/2", "--budget", "0.5"], ["--budget", "--budgets LIST"]),
    (["--budgets", "1/2", "--seeds", "0,1", "--seed", "2"], ["--seed", "--seeds LIST"]),
    (["--budgets", "1/2", "--lam", "-1"], ["lam", "-1"]),
    (["--budgets", "1/2", "--model", "resnet9"], ["'resnet9'"]),
    (["--budgets", "1/2", "--teacher", "/nonexistent/t.pt"], ["/nonexistent/t.pt"]),
])
def test_bad_input_is_refused_and_creates_nothing(tmp_path, capsys, args, needles):
    out = tmp_path / "s"
    opts = [a for a in TINY if a not in ("--teacher", "none")]  # a --teacher given here is the one checked
    assert main(["sweep", "--out", str(out), *opts, *args]) == 2
    one_line_error(capsys.readouterr().err, *needles)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_out_folder_holding_something_else_is_refused_untouched(done_sweep, tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    run = tmp_path / "run"
    shutil.copytree(done_sweep / "b0.5-s0", run)
    file = tmp_path / "file"
    file.write_text("x")
    for out, needle in ((notes, "holds no sweep"), (run, "holds a run, not a sweep"), (file, "not a folder")):
        before = sorted(p.name for p in out.iterdir()) if out.is_dir() else file.read_text()
        assert sweep(out) == 2
        one_line_error(capsys.readouterr().err, str(out), needle)
        assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else file.read_text()) == before


def test_refused_as_a_process_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bar_core", "sweep", "--budgets", "1/2,2", "--out", str(tmp_path / "s")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2
    one_line_error(r.stderr, "budget 2", "(0, 1]")
    assert not (tmp_path / "s").exists()


# ---- the sweep job ------------------------------------------------------------------------------
def test_sweep_job_trains_the_runs_and_reports_the_current_one(runs_dir):
    manager = JobManager(runs_dir)
    cfg = tiny_config(prune_epochs=1, max_steps_per_epoch=3, extra_prune_steps=5)
    for bad, budgets in ((cfg.replace(teacher="/nonexistent/t.pt"), [0.5]), (cfg, [0.5, 0.5]), (cfg, [])):
        with pytest.raises(USER_ERRORS):  # refused in the calling thread, before anything is written
            manager.start_sweep(bad, budgets, name="bad")
    assert not runs_dir.exists() and manager.job is None and not manager.busy
    job = manager.start_sweep(cfg, [0.5, 0.25], name="sw")
    assert job.kind == "sweep" and job.thread.daemon
    with pytest.raises(JobBusy):
        manager.start(cfg, name="other")
    with pytest.raises(JobBusy):
        manager.start_sweep(cfg, [0.125], name="other")
    seen = set()
    while not job.join(0.02):
        p = job.progress
        if p is not None and p.state == "running":
            seen.add((p.index, p.total, p.name, p.budget))
            snap = job.snapshot()  # the current run's (its start record may be on its way)
            assert snap.run_dir == p.run_dir and snap.config.get("budget", p.budget) == p.budget
    assert seen == {(0, 2, "b0.5-s0", 0.5), (1, 2, "b0.25-s0", 0.25)}
    assert job.state == "done" and job.outcomes == {"b0.5-s0": "done", "b0.25-s0": "done"}
    assert [(r.name, r.state) for r in job.finished_rows()] == [("sw/b0.5-s0", "done"), ("sw/b0.25-s0", "done")]
    assert list(read_csv(runs_dir / "sw")["state"]) == ["done", "done"]
    assert job.snapshot().summary["state"] == "done" and job.snapshot().config["budget"] == 0.25


def test_stopping_the_sweep_job_keeps_a_stopped_run_and_it_continues(runs_dir):
    manager = JobManager(runs_dir)
    job = manager.start_sweep(tiny_config(prune_epochs=3, max_steps_per_epoch=8, extra_prune_steps=5), [0.5, 0.25],
                              name="sw")
    wait_for(lambda: job.snapshot().n_steps >= 10, timeout=120, what="some steps of the first run")
    version = job.buffer.version
    job.stop()
    assert job.join(60) and job.state == "stopped" and job.outcomes == {"b0.5-s0": "stopped"}
    first = runs_dir / "sw" / "b0.5-s0"
    assert (first / "checkpoint.pt").is_file() and not (runs_dir / "sw" / "b0.25-s0").exists()
    assert json.loads((first / "summary.json").read_text())["state"] == "stopped"
    # continued as sweep.json asks: the stopped run resumes, the second starts
    again = manager.start_sweep(None, name="sw")
    assert again.join(120) and again.state == "done", again.outcomes
    assert again.outcomes == {"b0.5-s0": "done", "b0.25-s0": "done"}
    steps = pd.read_csv(first / "metrics.csv")["step"].tolist()
    assert steps == list(range(len(steps))), "every step once"
    assert job.buffer.version >= version and os.path.isfile(runs_dir / "sw" / "sweep.csv")
