"""`bar sweep ... --ray`: each run of a sweep as a Ray task, on a real local Ray instance."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bar_core.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "synthetic", "--teacher", "none", "--pretrain-epochs", "1", "--prune-epochs", "2",
        "--finetune-epochs", "1", "--max-steps-per-epoch", "5", "--batch-size", "32", "--test-limit", "200",
        "--lam", "5e-5", "--extra-prune-steps", "20", "--threads", "1", "--quiet"]


def test_a_two_run_sweep_trains_as_ray_tasks_and_equals_the_sweep_trained_here(tmp_path):
    pytest.importorskip("ray")
    ray_out, here_out = tmp_path / "ray-sweep", tmp_path / "here-sweep"
    proc = subprocess.run([sys.executable, "-m", "bar_core", "sweep", "--budgets", "1/2,1/4", *TINY, "--ray", "local",
                           "--out", str(ray_out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("(Ray task, 1 CPU(s))") == 2, proc.stderr
    assert "b0.5-s0 (budget 0.5, seed 0): done" in proc.stderr and "b0.25-s0 (budget 0.25, seed 0): done" in proc.stderr
    table = pd.read_csv(ray_out / "sweep.csv")
    assert len(table) == 2 and set(table["state"]) == {"done"}
    # the same sweep in this process: Ray changes where a run trains, not what it computes (CPU, same seed)
    assert main(["sweep", "--budgets", "1/2,1/4", *TINY, "--out", str(here_out)]) == 0
    for run in ("b0.5-s0", "b0.25-s0"):
        a, b = pd.read_csv(ray_out / run / "metrics.csv"), pd.read_csv(here_out / run / "metrics.csv")
        assert list(a["step"]) == list(b["step"]) and (a["volume"] == b["volume"]).all(), run
        sa = json.loads((ray_out / run / "summary.json").read_text())
        sb = json.loads((here_out / run / "summary.json").read_text())
        assert (sa["volume_ratio"], sa["pruned_accuracy"]) == (sb["volume_ratio"], sb["pruned_accuracy"]), run
    # again: every run is done, nothing is trained twice
    again = subprocess.run([sys.executable, "-m", "bar_core", "sweep", "--budgets", "1/2,1/4", *TINY, "--ray", "local",
                            "--out", str(ray_out)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0 and again.stderr.count("done before, skipped") == 2, again.stderr[-2000:]


@pytest.mark.parametrize("extra, needle", [(["--ray", " "], "--ray must be local, auto or a cluster address"),
                                           (["--ray", "local", "--workers", "2"], "Ray decides how many runs")])
def test_bad_ray_options_are_one_line_errors(tmp_path, capsys, extra, needle):
    out = tmp_path / "sweep"
    assert main(["sweep", "--budgets", "1/2,1/4", *TINY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and not out.exists(), err


def test_without_the_ray_package_the_sweep_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "sweep"
    assert main(["sweep", "--budgets", "1/2", *TINY, "--ray", "local", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'bar-explorer[ray]'" in err and not out.exists(), err
