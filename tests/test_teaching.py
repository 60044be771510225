"""The teaching notes say what the app does and what the method is, with the values they use."""
from bar_app.views import explain
from bar_core.barrier import MARGIN, RAMP, TAU, lead_steps
from bar_core.hard_concrete import LOG_ALPHA_MAX, closed_threshold


def test_the_intro_puts_the_barriers_zero_below_a_not_far_below_the_budget():
    assert "zero far below" not in explain.INTRO
    assert "zero only below $a$" in explain.INTRO and "*final* budget" in explain.INTRO


def test_the_volume_note_gives_tau_m_and_how_many_steps_over_budget_are_usual():
    assert f"\\tau = {TAU:g}" in explain.VOLUME and "m = 10^{-4}" in explain.VOLUME and MARGIN == 1e-4
    assert "at most one of the 468 prune steps ends\nwith $V \\ge b$" in explain.VOLUME
    assert "rises at most 1.3× a step" in explain.VOLUME and RAMP == 1.3
    assert "with the paper's $f(V, a, b(p))$" in explain.VOLUME and "87 to 109 do" in explain.VOLUME
    assert "= 36$" in explain.VOLUME and lead_steps(0.2, LOG_ALPHA_MAX, closed_threshold()) == 36


def test_claims_are_told_apart_from_what_the_app_shows():
    assert "the paper's claim" in explain.BARRIER
    assert "sliders' $\\beta, \\gamma, \\zeta$" in explain.HARD_CONCRETE
    assert "Reading the grid" in explain.CONNECTIVITY and "no row here" in explain.CONNECTIVITY
    assert "Volume and MACs differ" in explain.CONNECTIVITY
