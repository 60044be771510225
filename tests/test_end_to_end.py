"""End to end: the default demo through the real CLI — shipped teacher, shipped data, B = 1/4."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_default_demo_reaches_the_budget_and_reports_accuracy(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "bar_core", "train", "--out", str(out), "--budget", "0.25"],
                       capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "done" and summary["budget"] == 0.25
    assert summary["volume_ratio"] <= 0.25, "V/V0 by hard count must end within the budget"
    assert summary["volume_ratio"] > 0.05, "and not collapse far below it"
    assert 0.0 < summary["teacher_accuracy"] <= 1.0 and 0.0 < summary["pruned_accuracy"] <= 1.0
    # a pruned network that still works: far above chance (10 classes) on the test split
    assert summary["pruned_accuracy"] > 0.75
    for key in ("steps_over_budget", "wall_seconds"):
        assert summary[key] >= 0
    assert f"{100 * summary['pruned_accuracy']:.2f}%" in r.stdout, "the CLI reports the accuracy"
    metrics = pd.read_csv(out / "metrics.csv")
    prune = metrics[metrics.phase == "prune"]
    assert prune.budget_b.iloc[0] > prune.volume.iloc[0] > prune.budget_b.iloc[-1], "b moves from above V0 down"
    assert prune.budget_b.iloc[-1] == pytest.approx(0.25 * prune.volume.iloc[0], rel=1e-9)
    assert (metrics[metrics.phase == "finetune"].volume_ratio <= 0.25).all(), "fine-tune keeps the architecture"
    # the wall's targets for the default demo (tests/test_barrier_wall.py runs the other budgets and
    # schedules): V ends inside [0.9·B, B], with at most 2 % of the prune steps over b
    assert summary["volume_ratio"] >= 0.9 * 0.25, summary["volume_ratio"]
    assert summary["steps_over_budget"] <= 0.02 * len(prune), summary["steps_over_budget"]
