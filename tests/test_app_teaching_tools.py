"""The barrier sandbox and the replay animation in the dashboard, headless with AppTest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bar_core.barrier import barrier_start, budget_at
from bar_core.figures import barrier_point
from bar_core.history import snapshot_from_run
from bar_core.job import JobManager
from tests.helpers import tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")


@pytest.fixture(autouse=True)
def fresh_app_state(runs_dir):
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def open_view(label: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.session_state["view_tabs"] = label
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def figure(at: AppTest, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)


def test_the_sandbox_works_before_any_run_and_follows_its_sliders():
    at = open_view("Barrier sandbox")
    assert at.button(key="sb_load").disabled, "nothing to load before a run exists"
    assert metric(at, "a / V0") == f"{barrier_start(1.0, 0.25):.4f}"
    assert metric(at, "b / V0") == f"{budget_at(0.5, 1.0, 0.25, 'sigmoid'):.4f}"
    at.slider(key="sb_progress").set_value(1.0).run()
    assert metric(at, "b / V0") == "0.2500"
    at.slider(key="sb_volume").set_value(0.3).run()
    assert metric(at, "f(V, a, b)") == "+∞" and any("past the wall" in c.value for c in at.caption)
    at.slider(key="sb_budget").set_value(0.5).run()
    assert metric(at, "a / V0") == f"{barrier_start(1.0, 0.5):.4f}" and metric(at, "f(V, a, b)") == "0"
    # a budget that leaves no room for the margin is named, and the view stays usable
    at.slider(key="sb_budget").set_value(0.05).run()
    at.select_slider(key="sb_margin").set_value(0.1).run()
    assert any("a = B − m(1+τ)" in w.value for w in at.warning)
    at.button(key="sb_reset").click().run()
    assert metric(at, "b / V0") == f"{budget_at(0.5, 1.0, 0.25, 'sigmoid'):.4f}" and not at.exception


def test_the_sandbox_loads_the_shown_runs_values(runs_dir):
    job = JobManager(runs_dir).start(tiny_config(budget=0.5, schedule="linear", lam=4e-5), name="shown")
    assert job.join(120) and job.state == "done"
    at = open_view("Barrier sandbox")
    at.button(key="sb_load").click().run()
    assert not at.exception, at.exception
    point = barrier_point(snapshot_from_run(runs_dir / "shown"))
    assert at.slider(key="sb_budget").value == 0.5 and at.session_state["sb_schedule"] == "linear"
    assert at.select_slider(key="sb_lam").value == 4e-5, "a λ off the sliders' stops is added to them"
    assert metric(at, "b / V0") == f"{point.b / point.v0:.4f}"
    assert metric(at, "a / V0") == f"{point.a / point.v0:.4f}"
    assert any("Loaded from" in c.value for c in at.caption)


def test_the_replay_plays_a_finished_run_at_the_chosen_speed(runs_dir):
    job = JobManager(runs_dir).start(tiny_config(), name="played")
    assert job.join(120) and job.state == "done"
    at = open_view("Replay")
    fig = figure(at, "chart_replay")
    assert fig["frames"] and fig["layout"]["meta"]["playback_seconds"] == 15
    at.session_state["replay_seconds"] = 5
    at.run()
    fig = figure(at, "chart_replay")
    assert fig["layout"]["meta"]["frame_ms"] == int(5000 / len(fig["frames"]))
    assert any("▶ Play runs from the slider's position" in c.value for c in at.caption)


def test_the_replay_waits_for_a_running_job():
    from bar_app.state import get_manager
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    job = get_manager().start(tiny_config(max_steps_per_epoch=400, prune_epochs=3))
    at.session_state["view_tabs"] = "Replay"
    at.run()
    assert job.active, "the job is still training (it runs 1,200 steps)"
    assert any("plays a run that has ended" in i.value for i in at.info)
    assert not any(c.key == "chart_replay" for c in at.get("plotly_chart"))
    job.stop()
    job.join(60)
