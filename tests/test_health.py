"""A run that collapsed is never called a success: health findings in summary.json, the CLI and the app."""
import json
import shutil

import pytest

from bar_core.cli import _print_summary, main
from bar_core.health import health_findings
from tests.helpers import as_text

COLLAPSED = {"state": "done", "error": None, "budget": 0.125, "pruning_factor": 8.0, "volume_ratio": 0.016,
             "budget_met": True, "kept_channels": 7, "total_channels": 336, "teacher_accuracy": 0.8705,
             "pruned_accuracy": 0.1, "steps_over_budget": 186, "steps": 1300, "wall_seconds": 60.0,
             "device": "cpu", "threads": 2}
HEALTHY = {**COLLAPSED, "volume_ratio": 0.121, "pruned_accuracy": 0.862, "kept_channels": 120}


def test_findings_name_what_was_measured():
    found = health_findings(COLLAPSED, num_classes=10)
    assert len(found) == 2
    assert found[0].startswith("accuracy 10.00% is chance level for 10 classes")
    assert found[1].startswith("V/V0 0.0160 ended far below the budget 0.125")
    assert health_findings(HEALTHY, num_classes=10) == []
    drop = health_findings({**HEALTHY, "pruned_accuracy": 0.70}, num_classes=10)
    assert drop == ["accuracy 70.00% is 17.1 points below the teacher's 87.05%"]
    assert health_findings({**HEALTHY, "pruned_accuracy": None}, 10) == [], "a run stopped before any test"


def test_cli_summary_never_says_met_for_a_collapsed_run(capsys, tmp_path):
    _print_summary({**COLLAPSED, "health": health_findings(COLLAPSED, 10)}, tmp_path)
    out = capsys.readouterr().out
    assert "budget 0.125, under it, but the run is NOT healthy" in out and ", met;" not in out
    assert out.count("health:") == 2 and "chance level" in out
    _print_summary({**HEALTHY, "health": []}, tmp_path)
    out = capsys.readouterr().out
    assert "budget 0.125, met;" in out and "health:            ok" in out


def test_a_real_run_records_its_health(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--teacher", "none", "--pretrain-epochs", "1", "--prune-epochs",
                 "1", "--finetune-epochs", "1", "--max-steps-per-epoch", "3", "--batch-size", "32", "--test-limit",
                 "200", "--threads", "1", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    layout = json.loads((out / "layout.json").read_text())
    assert summary["health"] == health_findings(summary, layout["data"]["num_classes"])
    printed = capsys.readouterr().out
    for finding in summary["health"] or ["ok"]:
        assert finding in printed


@pytest.fixture
def collapsed_run(runs_dir, tmp_path):
    from bar_core.job import JobManager
    from tests.helpers import tiny_config

    job = JobManager(tmp_path / "made").start(tiny_config(budget=0.125), name="b8")
    assert job.join(120)
    shutil.copytree(tmp_path / "made" / "b8", runs_dir / "b8")
    path = runs_dir / "b8" / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(volume_ratio=0.016, pruned_accuracy=0.1, budget_met=True)
    summary.pop("health", None)  # as a folder written before runs judged their health
    path.write_text(json.dumps(summary))
    return runs_dir / "b8"


def test_the_app_flags_a_collapsed_run_instead_of_a_green_met(collapsed_run):
    import streamlit as st

    from bar_core.catalog import run_row
    from tests.test_app import open_app

    st.cache_resource.clear()
    at = open_app()
    assert at.selectbox(key="show").value == str(collapsed_run)
    warnings = [as_text(w.value) for w in at.warning]
    assert any("Not a healthy result: accuracy 10.00% is chance level" in w for w in warnings), warnings
    assert any("ended far below the budget 0.125" in w for w in warnings), warnings
    budget = next(m for m in at.metric if m.label == "Budget")
    assert budget.value == "under it, not healthy"
    assert "chance level" in run_row(collapsed_run).health
    st.cache_resource.clear()
