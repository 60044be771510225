"""The barrier as a wall (printing numbers; not a test): where V/V0 ends for every schedule and
budget, and how many prune steps end over the moving budget.

Default settings on the shipped subset, from the shipped teacher. Targets: V/V0 in [0.9·B, B] and
accuracy well above chance (10 %) in every cell; few prune steps with V ≥ b(p). `--finetune-epochs`
is 0 by default (the grid measures where pruning ends; fine-tuning moves no gate); `--variants`
runs the grid again with the lead, the Adam restart, the log α ceiling, the ramp of f, the hold of
open gates, the path guard or the rising wall off, one at a time, and with all seven off (the paper's f).
    .venv/bin/python bench/bench_wall.py [--budgets 1/2 1/4 ...] [--schedules sigmoid exp linear]
        [--seed 0] [--finetune-epochs 0] [--variants] [--csv bench/results/wall.csv]
"""
import argparse
import csv
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch

from bar_core.barrier import SCHEDULES
from bar_core.config import TrainConfig
from bar_core.trainer import Trainer

# name -> the settings that turn one part of the wall off (docs/method.md, "The barrier as a wall")
PAPER = {"barrier_lead": False, "wall_restart": False, "log_alpha_ceiling": False, "barrier_ramp": False,
         "hold_open": False, "keep_path": False, "rising_wall": False}
VARIANTS = {"default": {}, "no lead": {"barrier_lead": False}, "no restart": {"wall_restart": False},
            "no log α ceiling": {"log_alpha_ceiling": False}, "no ramp": {"barrier_ramp": False},
            "no hold": {"hold_open": False}, "no path guard": {"keep_path": False},
            "no rising wall": {"rising_wall": False}, "paper": PAPER}


def run_cell(cfg: TrainConfig) -> dict:
    t0 = time.perf_counter()
    trainer = Trainer(cfg).prepare()
    s = trainer.run()
    prune_steps = sum(ph.steps for ph in trainer.phases if ph.name == "prune") + s["extra_prune_steps"]
    return {"volume_ratio": s["volume_ratio"], "accuracy": s["pruned_accuracy"], "steps_over": s["steps_over_budget"],
            "prune_steps": prune_steps, "extra_steps": s["extra_prune_steps"], "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budgets", nargs="+", default=["1/2", "1/4", "1/8", "1/16", "1/32"])
    p.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--variants", action="store_true", help="also each part of the wall off, and the paper's f")
    p.add_argument("--csv", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    variants = VARIANTS if args.variants else {"default": {}}
    rows = []
    print(f"{'variant':>15} {'schedule':>8} {'B':>5} {'V/V0':>7} {'in [0.9B,B]':>11} {'acc':>6} {'over':>9} "
          f"{'extra':>5} {'s':>5}", flush=True)
    for variant, changes in variants.items():
        for schedule in args.schedules:
            for text in args.budgets:
                budget = float(Fraction(text))
                cfg = TrainConfig(budget=budget, schedule=schedule, seed=args.seed,
                                  finetune_epochs=args.finetune_epochs, **changes)
                r = run_cell(cfg)
                ok = 0.9 * budget <= r["volume_ratio"] <= budget
                rows.append({"variant": variant, "schedule": schedule, "budget": text, **r, "in_band": ok})
                print(f"{variant:>15} {schedule:>8} {text:>5} {r['volume_ratio']:7.4f} {'yes' if ok else 'NO':>11} "
                      f"{r['accuracy']:6.3f} {r['steps_over']:>4}/{r['prune_steps']:<4} {r['extra_steps']:>5} "
                      f"{r['seconds']:5.0f}", flush=True)
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        print(f"{variant}: {sum(r['in_band'] for r in mine)}/{len(mine)} cells in [0.9B, B], "
              f"{sum(r['steps_over'] for r in mine)} steps over b(p) in all")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
