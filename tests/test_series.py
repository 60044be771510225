"""A series of runs as one job, and the lesson it serves: "Why the barrier?" trains the same settings
with BAR, then with L0, and shows the two volume curves side by side."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bar_core.catalog import scan_runs
from bar_core.config import ConfigError, TrainConfig
from bar_core.job import JobManager
from bar_core.runs import RunFolderError
from bar_core.series import why_the_barrier
from tests.helpers import tiny_config, wait_for

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")


def test_the_lesson_is_the_same_settings_with_bar_then_l0():
    cfg = TrainConfig(budget=0.125, schedule="exp", lam=3e-6, prune_epochs=2, seed=4)
    (bar_name, bar), (l0_name, l0) = why_the_barrier(cfg, ["a", "b"])
    assert (bar_name, l0_name) == ("a", "b") and bar == cfg
    assert l0.method == "l0" and (l0.lam, l0.prune_epochs, l0.seed, l0.gate_lr) == (3e-6, 2, 4, cfg.gate_lr)
    assert (l0.budget, l0.schedule) == (TrainConfig().budget, TrainConfig().schedule), "BAR's own settings reset"
    with pytest.raises(ConfigError, match="mac_ratio"):  # settings that neither uses are still refused
        why_the_barrier(TrainConfig(mac_ratio=0.5))


def test_a_series_trains_its_runs_in_order_as_ordinary_runs(tmp_path):
    manager = JobManager(tmp_path)
    runs = why_the_barrier(tiny_config(lam=1e-4), ["why-bar", "why-l0"])
    job = manager.start_series(runs, "Why the barrier?")
    assert job.kind == "series" and job.name == "Why the barrier?"
    assert job.join(180) and job.state == "done", (job.state, job.outcomes)
    assert job.outcomes == {"why-bar": "done", "why-l0": "done"}
    names = {r.name: r for r in scan_runs(tmp_path)}
    assert set(names) == {"why-bar", "why-l0"} and all(r.sweep is None for r in names.values())
    methods = {n: json.loads((tmp_path / n / "config.json").read_text())["method"] for n in names}
    assert methods == {"why-bar": "bar", "why-l0": "l0"}
    bar = pd.read_csv(tmp_path / "why-bar" / "metrics.csv")
    l0 = pd.read_csv(tmp_path / "why-l0" / "metrics.csv")
    assert bar["budget_b"].notna().any() and l0["budget_b"].isna().all(), "one run has a budget, the other none"
    with pytest.raises(RunFolderError, match="why-bar"):  # names are never reused: nothing is overwritten
        manager.start_series(runs, "again")


def test_the_preset_starts_the_lesson_and_shows_both_volume_curves(runs_dir):
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    preset = next(o for o in at.selectbox(key="preset").options if o.startswith("Why the barrier?"))
    at.selectbox(key="preset").set_value(preset).run()
    assert any("then the same gates, data, λ and epochs with L0" in c.value for c in at.caption)
    at.number_input(key="cfg_max_steps_per_epoch").set_value(4)
    at.number_input(key="cfg_test_limit").set_value(200)
    at.text_input(key="cfg_run_name").set_value("lesson")
    at.button(key="start").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    from bar_app.state import get_manager
    job = get_manager().job
    assert job.kind == "series" and [r.name for r in job.plan.runs] == ["lesson-bar", "lesson-l0"]
    assert job.join(240) and job.state == "done", job.state
    at.run()
    fig = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key == "series_volume")
    assert [t["name"] for t in fig["data"]] == ["BAR (lesson-bar)", "L0 (lesson-l0)"]
    assert len([s for s in fig["layout"].get("shapes", []) if s.get("type") == "line"]) == 1, "BAR's budget only"
    wait_for(lambda: (runs_dir / "lesson-l0" / "summary.json").is_file(), 10, "the second run's summary")
    st.cache_resource.clear()
