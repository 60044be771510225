"""The barrier sandbox (bar_core/sandbox.py): its numbers are the method's own functions, its figure
moves with every slider, and a run's settings and last prune step load into it."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from bar_core.barrier import DEFAULT_CAP, barrier, barrier_start, budget_at
from bar_core.figures import barrier_point
from bar_core.history import snapshot_from_run
from bar_core.job import JobManager
from bar_core.sandbox import (
    SandboxState,
    from_run,
    pressure_along_schedule,
    progress_for_budget,
    sandbox_figure,
    validate,
)
from tests.helpers import tiny_config


def state(**changes) -> SandboxState:
    base = dict(volume=0.6, budget=0.25, schedule="sigmoid", schedule_k=None, progress=0.5, lam=2e-6)
    return SandboxState(**{**base, **changes})


def test_a_b_f_and_pressure_are_the_methods_formulas():
    s = state()
    assert s.a == pytest.approx(barrier_start(1.0, 0.25))
    assert s.b == pytest.approx(budget_at(0.5, 1.0, 0.25, "sigmoid"))
    assert s.f == pytest.approx(barrier(0.6, s.a, s.b))
    assert s.pressure == pytest.approx(2e-6 * s.f)
    # past the wall the loss uses the cap: λ·cap
    wall = state(progress=0.9)
    assert wall.volume >= wall.b and math.isinf(wall.f) and wall.pressure == pytest.approx(2e-6 * DEFAULT_CAP)
    assert "V ≥ b" in wall.region
    assert state(volume=0.2).pressure == 0.0 and "no pressure" in state(volume=0.2).region


@pytest.mark.parametrize("kind,k", [("sigmoid", None), ("exp", None), ("exp", 8.0), ("linear", None)])
def test_progress_for_budget_inverts_the_schedule(kind, k):
    for p in (0.0, 0.1, 0.37, 0.5, 0.83, 1.0):
        b = budget_at(p, 1.0, 0.125, kind, k)
        assert progress_for_budget(b, 0.125, kind, k) == pytest.approx(p, abs=1e-6)


def test_pressure_along_the_schedule_rises_to_the_cap_where_b_passes_v():
    s = state(volume=0.6)
    ps, pressure = pressure_along_schedule(s)
    crossing = progress_for_budget(0.6, 0.25, "sigmoid")
    before, after = pressure[ps < crossing - 0.01], pressure[ps > crossing + 0.01]
    assert np.all(np.diff(before) >= 0), "pressure grows as b comes down to V"
    assert np.allclose(after, 2e-6 * DEFAULT_CAP), "past the wall: the cap"


def test_the_figure_follows_each_slider():
    base = sandbox_figure(state())
    go.Figure(base.to_dict())  # valid plotly
    by_name = lambda fig: {t.name: t for t in fig.data}  # noqa: E731
    assert by_name(base)["b now"].x[0] == 0.5
    assert by_name(sandbox_figure(state(progress=0.8)))["b now"].x[0] == 0.8
    assert by_name(sandbox_figure(state(volume=0.4)))["V (held)"].y[0] == 0.4
    assert by_name(sandbox_figure(state(budget=0.125)))["a"].y[0] == pytest.approx(barrier_start(1.0, 0.125))
    exp_b = by_name(sandbox_figure(state(schedule="exp")))["budget b(p)"].y
    sig_b = by_name(base)["budget b(p)"].y
    assert exp_b[30] < sig_b[30], "exp brings b down earlier than sigmoid"
    # λ = 0: no pressure anywhere, drawn on a linear axis
    flat = sandbox_figure(state(lam=0.0))
    assert flat.layout.yaxis3.type != "log"


@pytest.mark.parametrize("changes,message", [
    (dict(budget=0.0), "budget B = 0"),
    (dict(budget=1e-4), "a = B − m(1+τ)"),
    (dict(schedule="cosine"), "schedule 'cosine'"),
    (dict(progress=1.5), "progress p = 1.5"),
])
def test_settings_that_cannot_be_drawn_are_named(changes, message):
    assert message in validate(state(**changes))
    assert validate(state()) is None


def test_a_runs_values_load_with_v_and_b_at_its_last_prune_step(tmp_path):
    job = JobManager(tmp_path).start(tiny_config(budget=0.5, schedule="exp", lam=3e-5), name="run")
    assert job.join(120) and job.state == "done"
    snap = snapshot_from_run(tmp_path / "run")
    point = barrier_point(snap)
    s = from_run(snap.config, point)
    assert (s.budget, s.schedule, s.lam) == (0.5, "exp", 3e-5)
    assert s.volume == pytest.approx(point.V / point.v0)
    assert s.b == pytest.approx(point.b / point.v0, rel=1e-6), "p is found from the run's b"
    assert s.a == pytest.approx(point.a / point.v0)
    # before any prune step: V = V0 at the start of the schedule
    start = from_run(snap.config)
    assert (start.volume, start.progress) == (1.0, 0.0)
