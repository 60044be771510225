"""Barrier function and budget schedule against the spec."""
import math

import pytest

from bar_core.barrier import SCHEDULES, barrier, barrier_start, budget_at, capped_barrier, schedule_progress


@pytest.mark.parametrize("V, f", [(1.5, 0.5), (1.9, 8.1), (0.9, 0.0), (1.0, 0.0)])
def test_reference_values(V, f):
    assert barrier(V, 1.0, 2.0) == pytest.approx(f, rel=1e-12)


def test_wall_at_b():
    assert barrier(2.5, 1.0, 2.0) == math.inf
    assert barrier(2.0, 1.0, 2.0) == math.inf
    assert capped_barrier(2.5, 1.0, 2.0, cap=1e10) == 1e10
    assert capped_barrier(1.5, 1.0, 2.0, cap=1e10) == 0.5


def test_default_cap_is_the_one_training_uses():
    # A 1e10 wall made Adam collapse every gate at once; the library's default and a run's default agree.
    from bar_core.config import TrainConfig
    assert capped_barrier(2.5, 1.0, 2.0) == TrainConfig().cap == 1e4


def test_smooth_switch_on_convex_increasing():
    a, b, h = 1.0, 2.0, 1e-6
    assert (barrier(a + h, a, b) - barrier(a, a, b)) / h < 1e-5, "f'(a) = 0"
    xs = [1.0 + i / 100 for i in range(1, 100)]
    fs = [barrier(x, a, b) for x in xs]
    assert all(f2 > f1 for f1, f2 in zip(fs, fs[1:])), "increasing"
    d = [f2 - f1 for f1, f2 in zip(fs, fs[1:])]
    assert all(d2 > d1 for d1, d2 in zip(d, d[1:])), "convex"


def test_barrier_rejects_b_not_above_a():
    with pytest.raises(ValueError, match="b > a"):
        barrier(1.0, 2.0, 2.0)


def test_sigmoid_reference_points():
    assert schedule_progress(0.25, "sigmoid") == pytest.approx(0.070104, abs=1e-6)
    assert schedule_progress(0.5, "sigmoid") == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedule_end_points_and_monotonic(kind):
    assert schedule_progress(0.0, kind) == pytest.approx(0.0, abs=1e-12)
    assert schedule_progress(1.0, kind) == pytest.approx(1.0, abs=1e-12)
    ps = [schedule_progress(i / 50, kind) for i in range(51)]
    assert all(p2 > p1 for p1, p2 in zip(ps, ps[1:]))
    # b from (1 + τ)·V0 down to B·V0, and held there afterwards
    v0, B = 1000.0, 0.25
    assert budget_at(0.0, v0, B, kind) == pytest.approx(1.01 * v0)
    assert budget_at(1.0, v0, B, kind) == pytest.approx(B * v0)
    assert budget_at(1.7, v0, B, kind) == pytest.approx(B * v0)


def test_exponential_schedule_formula():
    k = 4.0
    assert schedule_progress(0.3, "exp") == pytest.approx((1 - math.exp(-k * 0.3)) / (1 - math.exp(-k)))


def test_a_sits_just_below_the_final_budget():
    v0, B = 65856.0, 0.25
    a = barrier_start(v0, B)
    assert a == pytest.approx(B * v0 - 1e-4 * 1.01 * v0)
    assert a < B * v0 < budget_at(0.0, v0, B)


def test_unknown_schedule_named_in_error():
    with pytest.raises(ValueError, match="'cosine'.*sigmoid, exp, linear"):
        schedule_progress(0.5, "cosine")


def test_without_a_cap_of_its_own_a_run_meets_the_same_wall_whatever_lambda():
    from bar_core.barrier import WALL_PRESSURE, wall_cap
    from bar_core.config import TrainConfig
    for lam in (2e-8, 2e-7, 2e-6, 2e-4):
        assert lam * TrainConfig(lam=lam).cap == pytest.approx(WALL_PRESSURE) == pytest.approx(0.02)
    assert TrainConfig(lam=2e-7, barrier_cap=500.0).cap == 500.0
    assert wall_cap(0.0) == 1e4  # no sparsity loss: any finite cap will do
