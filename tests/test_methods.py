"""The `method` setting: BAR (the barrier and the moving budget) or L0 (Louizos et al.: λ·L_S alone),
with the same gates, data and phases; every method writes a run folder that the app replays."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from bar_core.cli import main
from bar_core.config import ConfigError, TrainConfig
from bar_core.job import JobManager
from bar_core.losses import bar_objective, l0_objective
from tests.helpers import tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")


@pytest.fixture(scope="module")
def l0_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("methods")
    job = JobManager(root).start(tiny_config(method="l0", lam=1e-4, budget=0.25, max_steps_per_epoch=20), name="l0")
    assert job.join(120) and job.state == "done"
    return root / "l0"


def test_the_l0_objective_is_the_data_loss_plus_lambda_times_l_s():
    d, ls = torch.tensor(0.7), torch.tensor(1234.0)
    assert l0_objective(d, ls, 1e-3).item() == pytest.approx(0.7 + 1.234)
    assert l0_objective(d, ls, 1e-3).item() == bar_objective(d, ls, 1.0, 1e-3).item(), "BAR with f = 1"


def test_l0_trains_with_no_barrier_no_schedule_and_no_extra_steps(l0_run):
    m = pd.read_csv(l0_run / "metrics.csv")
    prune = m[m["phase"] == "prune"]
    lam = json.loads((l0_run / "config.json").read_text())["lam"]
    assert len(prune) == 40, "the planned prune steps only: no extra steps at a budget"
    assert prune["budget_b"].isna().all() and prune["barrier_a"].isna().all(), "no budget, no barrier"
    assert (prune["barrier_f"] == 1.0).all() and not prune["over_budget"].any()
    # the loss each step trained on is L_D + λ·L_S, to float32 precision
    assert ((prune["loss"] - (prune["loss_data"] + lam * prune["loss_sparsity"])).abs()
            <= 1e-5 * prune["loss"].abs()).all()
    assert prune["volume"].iloc[-1] < prune["volume"].iloc[0], "λ·L_S alone prunes"
    summary = json.loads((l0_run / "summary.json").read_text())
    assert summary["method"] == "l0" and summary["budget"] is None and summary["budget_met"] is None
    assert summary["pruning_factor"] == pytest.approx(1 / summary["volume_ratio"])
    assert not [h for h in summary["health"] if "budget" in h], "no budget to be judged against"


def test_an_l0_run_replays_in_every_view_with_no_budget_wall(l0_run, runs_dir):
    import shutil

    from bar_app.views.registry import LABELS
    shutil.copytree(l0_run, runs_dir / "l0")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    for label in LABELS:
        at.session_state["view_tabs"] = label
        at.run()
        assert not at.exception, (label, at.exception)
    at.session_state["view_tabs"] = "Volume & budget"
    at.run()
    fig = json.loads(next(c for c in at.get("plotly_chart") if c.key == "chart_volume").proto.spec)
    assert not [s for s in fig["layout"].get("shapes", []) if s.get("xref") == "x domain"], "no a or B level"
    at.session_state["view_tabs"] = "Barrier"
    at.run()
    assert any("no barrier" in i.value for i in at.info)
    assert any(m.label == "Budget" and m.value == "none (L0)" for m in at.metric)
    st.cache_resource.clear()


def test_bad_methods_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="method 'slimming'"):
        TrainConfig(method="slimming").validate()
    assert main(["sweep", "--method", "l0", "--budgets", "1/2,1/4", "--dataset", "synthetic", "--teacher", "none",
                 "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert "a budget sweep needs method 'bar'" in err and not (tmp_path / "sw").exists()


def test_a_config_json_from_before_the_method_setting_trains_bar():
    data = TrainConfig().to_dict()
    data.pop("method")
    assert TrainConfig.from_file_dict(data).method == "bar"
    assert not math.isnan(TrainConfig.from_file_dict(data).lam)
