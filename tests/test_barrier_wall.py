"""The barrier as a wall (docs/method.md): f looks L steps ahead of the schedule, the gates' Adam
forgets the capped spike, log α has a ceiling, f rises at most 1.3× a step, no gate closes while f = 0
— and V ends inside [0.9·B, B] for every schedule and budget, on real short runs of the shipped subset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bar_core.barrier import RAMP, RISE, budget_at, lead_steps, ramped_barrier, rising_cap
from bar_core.config import ConfigError, TrainConfig
from bar_core.connectivity import carries_input
from bar_core.hard_concrete import LOG_ALPHA_MAX, HardConcreteGate, closed_threshold, open_threshold, test_gate
from bar_core.models import gates
from bar_core.records import StepRecord
from bar_core.trainer import Trainer, evaluate
from bar_core.volume import volume
from tests.helpers import tiny_config


def test_the_lead_is_the_steps_a_gate_needs_to_close_from_the_top():
    assert lead_steps(0.2, LOG_ALPHA_MAX, closed_threshold()) == 36  # ⌈(ln 100 + ln 11)/0.2⌉ = ⌈35.01⌉
    assert lead_steps(0.01, LOG_ALPHA_MAX, closed_threshold()) == 701
    assert lead_steps(1.0, 2.0, 0.0) == 2  # exactly whole: no extra step
    with pytest.raises(ValueError, match="gate learning rate > 0"):
        lead_steps(0.0, 1.0, 0.0)


def test_a_config_json_from_before_the_wall_settings_trains_the_papers_barrier():
    data = TrainConfig().to_dict()
    names = ("barrier_lead", "wall_restart", "log_alpha_ceiling", "barrier_ramp", "hold_open", "keep_path",
             "rising_wall")
    for name in names:
        data.pop(name)
    old = TrainConfig.from_file_dict(data)
    assert [getattr(old, n) for n in names] == [False] * 7
    assert [getattr(TrainConfig(), n) for n in names] == [True] * 7


def test_an_initial_log_alpha_above_the_ceiling_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"gate_init 5\.0 is above the log alpha ceiling ln 100 = 4\.6052"):
        TrainConfig(gate_init=5.0).validate()
    assert TrainConfig(gate_init=5.0, log_alpha_ceiling=False).validate().gate_init == 5.0


def test_the_lead_is_at_most_a_tenth_of_the_prune_phase():
    """36 steps ahead in a 30-step prune phase would hold V at B·V0 from the first step."""
    assert Trainer(tiny_config(prune_epochs=2, max_steps_per_epoch=15)).prepare().lead == 3
    assert Trainer(TrainConfig()).prepare().lead == 36  # the default demo: 468 prune steps
    assert Trainer(TrainConfig(barrier_lead=False)).prepare().lead == 0


def _prune_steps(cfg: TrainConfig) -> tuple[Trainer, list[StepRecord]]:
    trainer = Trainer(cfg).prepare()
    steps: list[StepRecord] = []
    trainer.subscribe(lambda r: steps.append(r) if r.kind == "step" and r.phase == "prune" else None)
    trainer.run()
    return trainer, steps


def test_f_is_evaluated_at_the_budget_lead_steps_ahead_and_log_alpha_stays_under_its_ceiling():
    cfg = tiny_config(gate_init=4.5, lam=1e-3, prune_epochs=3, max_steps_per_epoch=30, gate_lr=1.0)
    trainer, steps = _prune_steps(cfg)
    L = 8  # ⌈(ln 100 + ln 11)/1.0⌉ = ⌈7.003⌉
    assert trainer.lead == L
    prune = trainer.phases[[p.name for p in trainer.phases].index("prune")]
    for r in steps[:prune.steps]:
        p = (r.step - prune.start_step + 1) / prune.steps
        assert r.budget_b == pytest.approx(budget_at(p, trainer.v0, cfg.budget))
        assert r.barrier_b == pytest.approx(budget_at(p + L / prune.steps, trainer.v0, cfg.budget))
        assert r.barrier_b <= r.budget_b
        assert r.over_budget == (r.volume >= r.budget_b)
    assert any(r.barrier_b < r.budget_b for r in steps)
    for _, g in gates(trainer.student):
        assert float(g.log_alpha.max()) <= LOG_ALPHA_MAX + 1e-6


PAPER = {"barrier_lead": False, "wall_restart": False, "log_alpha_ceiling": False, "barrier_ramp": False,
         "hold_open": False, "keep_path": False, "rising_wall": False}


def test_the_ramp_lets_f_rise_at_most_1_3x_a_step_from_1_and_fall_at_once():
    assert RAMP == 1.3
    assert ramped_barrier(1e6, 0.0) == pytest.approx(1.3)     # from the first step: at most 1.3
    assert ramped_barrier(1e6, 100.0) == pytest.approx(130.0)
    assert ramped_barrier(5.0, 100.0) == 5.0                   # falls at once
    assert ramped_barrier(0.0, 100.0) == 0.0


def test_in_a_run_f_rises_gradually_to_its_cap_and_without_the_ramp_jumps():
    """λ large and B = 1/2: V is over the led budget from the first steps, where f is the cap."""
    def fs(**changes):
        cfg = tiny_config(lam=1e-3, prune_epochs=2, max_steps_per_epoch=15, budget=0.5, barrier_cap=1e4,
                          finetune_epochs=0, **changes)
        return [r.barrier_f for r in _prune_steps(cfg)[1]]
    ramped, jumped = fs(), fs(barrier_ramp=False)
    for before, now in zip([0.0] + ramped, ramped):
        assert now <= RAMP * max(before, 1.0) * (1 + 1e-9)
    assert ramped[0] == pytest.approx(RAMP) and max(ramped) > 100
    assert jumped[0] > 100 * RAMP  # the barrier's value at V0 at once


def test_keep_open_holds_a_gate_just_above_the_closed_threshold():
    g = HardConcreteGate(4, init_log_alpha=0.0)
    with torch.no_grad():
        g.log_alpha.copy_(torch.tensor([-5.0, -5.0, 1.0, -5.0]))
    g.keep_open(torch.tensor([True, False, True, False]))
    assert g.open_mask().tolist() == [True, False, True, False]
    assert float(g.log_alpha[0].detach()) == pytest.approx(closed_threshold(), abs=2e-4)
    assert g.log_alpha.detach()[1:3].tolist() == [-5.0, 1.0]


def test_lift_opens_a_channel_fully_and_leaves_a_more_open_one_alone():
    assert float(test_gate(open_threshold())) == pytest.approx(1.0)
    assert float(test_gate(open_threshold() - 0.05)) < 0.996
    g = HardConcreteGate(3, init_log_alpha=0.0)
    with torch.no_grad():
        g.log_alpha.copy_(torch.tensor([closed_threshold() + 1e-4, 4.0, -5.0]))
        g.lift(0)
        g.lift(1)
    assert g.log_alpha.detach().tolist() == pytest.approx([open_threshold(), 4.0, -5.0])
    assert g.deterministic()[:2].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def _v_falls_at_f_zero(**changes) -> tuple[int, int]:
    """(prune steps with f = 0 followed by a prune step, how many of them lowered V)."""
    cfg = tiny_config(lam=1e-3, prune_epochs=3, max_steps_per_epoch=30, budget=0.5, finetune_epochs=0,
                      extra_prune_steps=0, **changes)
    steps = _prune_steps(cfg)[1]
    pairs = [(r, nxt) for r, nxt in zip(steps, steps[1:]) if r.barrier_f == 0]
    return len(pairs), sum(nxt.volume < r.volume for r, nxt in pairs)


def test_no_gate_closes_while_the_barrier_is_off():
    """V recorded at a step is the volume before it: after a step with f = 0 it may rise, never fall."""
    held, fell = _v_falls_at_f_zero()
    assert held > 10 and fell == 0
    free, fell_free = _v_falls_at_f_zero(hold_open=False)
    assert free > 10 and fell_free > 0  # without the hold the data term's noise closes gates


def test_the_papers_barrier_is_one_setting_away():
    cfg = tiny_config(gate_init=5.0, prune_epochs=1, max_steps_per_epoch=6, **PAPER)
    trainer = Trainer(cfg).prepare()
    steps, tops = [], []

    def after_step(r):
        if r.kind == "step" and r.phase == "prune":
            steps.append(r)
            tops.append(max(float(g.log_alpha.detach().max()) for _, g in gates(trainer.student)))
    trainer.subscribe(after_step)
    trainer.run()
    assert steps and all(r.barrier_b == r.budget_b for r in steps)
    assert tops[0] > LOG_ALPHA_MAX  # one Adam step of 0.2 from 5.0, and no ceiling


def _gate_moves(**changes) -> list[tuple[float, np.ndarray]]:
    """(f, |Δ log α| of every gate) for each prune step after the first."""
    cfg = tiny_config(barrier_cap=1.0, lam=1e-3, prune_epochs=2, max_steps_per_epoch=15, budget=0.5,
                      log_alpha_ceiling=False, finetune_epochs=0, **changes)
    trainer = Trainer(cfg).prepare()
    seen: list[tuple[float, np.ndarray]] = []

    def after_step(r):
        if r.kind == "step" and r.phase == "prune":
            seen.append((r.barrier_f, np.concatenate([g.log_alpha.detach().numpy().copy()
                                                      for _, g in gates(trainer.student)])))
    trainer.subscribe(after_step)
    trainer.run()
    return [(f, np.abs(la - seen[i - 1][1])) for i, (f, la) in enumerate(seen) if i > 0]


def test_the_gates_adam_forgets_the_capped_spike_once_f_leaves_the_cap():
    """A fresh Adam's first step moves every parameter by about its learning rate (m̂/√v̂ = ±1). The cap
    here is 1, which f reaches at once; on the step where f falls below it the gates move by gate_lr
    with the restart, and by what Adam remembers without it."""
    cap, lr = 1.0, TrainConfig().gate_lr
    restarted, remembered = _gate_moves(), _gate_moves(wall_restart=False)
    left = [i for i in range(1, len(restarted)) if restarted[i - 1][0] >= cap > restarted[i][0]]
    assert left, "the run never left the cap; the test needs a run that does"
    for i in left:
        moved = restarted[i][1]
        # a few gates' gradients are as small as Adam's eps, and those move a little less
        assert abs(np.median(moved) - lr) < 1e-3 and np.mean(np.abs(moved - lr) < 0.01) > 0.9, moved
        assert remembered[i][0] == restarted[i][0]  # the same run up to this step
        assert abs(np.median(remembered[i][1]) - lr) > 5e-3, np.median(remembered[i][1])


# Real runs of the default demo's pruning phase (6 epochs from the shipped teacher on the shipped
# subset), without fine-tuning: where pruning leaves V. bench/bench_wall.py measures every schedule.
def _prune_only(**changes) -> dict:
    s = Trainer(TrainConfig(finetune_epochs=0, threads=2, **changes)).prepare().run()
    assert s["state"] == "done"
    return s


# The default demo (sigmoid, B = 1/4) is held to the same band by tests/test_end_to_end.py, whose run
# prunes with these settings before it fine-tunes.
@pytest.mark.parametrize("schedule,budget", [("sigmoid", 1 / 2), ("sigmoid", 1 / 8), ("sigmoid", 1 / 16),
                                             ("exp", 1 / 2), ("linear", 1 / 2)])
def test_the_volume_ends_inside_the_budget_band(schedule, budget):
    s = _prune_only(budget=budget, schedule=schedule)
    assert 0.9 * budget <= s["volume_ratio"] <= budget, s["volume_ratio"]
    assert s["pruned_accuracy"] > 0.5  # chance is 0.1; fine-tuning is still to come
    # the default demo's target is 2 %; smaller budgets take a few steps at the wall while f rises, and
    # exp and linear lower b from the first step, before any gate can have closed (bench_wall.py counts them)
    limit = 0.02 if (schedule, budget) == ("sigmoid", 1 / 2) else \
        0.1 if schedule == "sigmoid" else 0.15
    assert s["steps_over_budget"] <= limit * s["steps"], s["steps_over_budget"]


def test_the_exp_schedule_at_one_eighth_holds_where_the_papers_barrier_collapses():
    """README's `--budget 1/8 --schedule exp`: with f at the scheduled b, V meets b early, f sits at its
    cap and the gates close far past the budget; looking ahead, V stops inside the band."""
    ours = _prune_only(budget=1 / 8, schedule="exp")
    assert 0.9 / 8 <= ours["volume_ratio"] <= 1 / 8 and ours["pruned_accuracy"] > 0.5
    # the paper's barrier: stopped at the first step V is below half the budget (step 30 of 468 here;
    # its gates do not reopen), and the network it left there is scored on the same test images
    paper = Trainer(TrainConfig(finetune_epochs=0, threads=2, budget=1 / 8, schedule="exp", **PAPER)).prepare()
    paper.subscribe(lambda r: paper.stop() if r.kind == "step" and r.volume_ratio < 0.5 / 8 else None)
    paper.run()
    assert volume(paper.student) < 0.5 / 8 * paper.v0 and paper.progress.step < 468
    accuracy, _ = evaluate(paper.student, paper.data, paper.device, paper.config.channels_last)
    assert accuracy < ours["pruned_accuracy"]


def _cuts(**changes) -> tuple[int, int, float]:
    """(prune steps after which the input no longer reaches the logits, prune steps, the largest spread
    (standard deviation over the test images) of one logit of the pruned network) of a tiny run pushed
    far: budget 0.03, the exp schedule, λ 20× the tiny runs' usual."""
    cfg = tiny_config(budget=0.03, schedule="exp", lam=1e-3, prune_epochs=3, max_steps_per_epoch=30,
                      finetune_epochs=0, **changes)
    trainer = Trainer(cfg).prepare()
    cuts: list[bool] = []
    trainer.subscribe(lambda r: cuts.append(not carries_input(trainer.student))
                      if r.kind == "step" and r.phase == "prune" else None)
    s = trainer.run()
    assert s["volume_ratio"] <= 0.03
    trainer.student.eval()
    with torch.no_grad():
        logits = torch.cat([trainer.student(x) for x, _ in trainer.data.test_batches(100)])
    return sum(cuts), len(cuts), float(logits.std(0).max())


def test_no_step_cuts_the_network_in_two():
    cut, steps, spread = _cuts()
    assert steps >= 90 and cut == 0
    assert spread > 0.01  # a path at full strength: the logits still depend on the image
    cut_free, _, spread_free = _cuts(keep_path=False)
    assert cut_free > 10 and spread_free == 0.0  # without the guard the last stem channels close: one answer for all


def test_past_the_schedule_the_cap_rises_2_percent_an_extra_step():
    assert rising_cap(1e4, 0) == 1e4 and rising_cap(1e4, 200) == pytest.approx(1e4 * 1.02 ** 200)
    # a slow gate lr leaves V over B when the schedule ends; λ small enough that f sits at its cap there
    cfg = tiny_config(budget=0.25, gate_lr=0.05, extra_prune_steps=30)
    trainer, steps = _prune_steps(cfg)
    planned = cfg.prune_epochs * cfg.max_steps_per_epoch
    extra = steps[planned:]
    assert trainer.progress.extra_steps == len(extra) > 2
    assert all(r.barrier_f <= rising_cap(cfg.cap, k) * (1 + 1e-9) for k, r in enumerate(extra))
    assert max(r.barrier_f for r in extra) > cfg.cap * RISE  # the wall rose past the fixed cap
    _, fixed = _prune_steps(tiny_config(budget=0.25, gate_lr=0.05, extra_prune_steps=30, rising_wall=False))
    assert max(r.barrier_f for r in fixed) <= cfg.cap
