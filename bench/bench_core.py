"""Core benchmarks (printing numbers; not a test):

1. Training images/s of the default model with gates vs without (target: ratio >= 0.9).
2. Wall time of the default demo, prune + fine-tune from the shipped teacher to B = 1/4
   (target <= 90 s on 2 CPU cores), with its accuracy next to the teacher's (target: within 2 points).

Run on a quiet machine: with anything else on the second core, two torch threads collapse. The
throughput ratio is measured in several fresh processes (it moves by a few percent from one process
to the next, far more than within one) and the median reported.
    .venv/bin/python bench/bench_core.py [--threads 2] [--processes 3] [--seeds 0 1 2] [--skip-demo]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from bar_core.allocator import tune_malloc
from bar_core.config import TrainConfig
from bar_core.data import load_data
from bar_core.models import DEFAULT_MODEL, build_model
from bar_core.trainer import Trainer


def train_throughput(gated: bool, data, steps: int = 80, batch: int = 128) -> float:
    torch.manual_seed(0)
    model = build_model(DEFAULT_MODEL, data.spec.in_channels, data.spec.num_classes, gated=gated)
    model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batches = list(data.train_batches(batch, seed=0, epoch=0))
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        x, y = batches[i % len(batches)]
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def ratio_in_this_process(threads: int, repeats: int, tune: bool) -> dict:
    torch.set_num_threads(threads)
    tuned = tune_malloc() if tune else False  # as the trainer does
    data = load_data()
    dense, gated = [], []
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        dense.append(train_throughput(False, data))
        gated.append(train_throughput(True, data))
    return {"dense": statistics.median(dense), "gated": statistics.median(gated), "tuned": tuned}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=8, help="interleaved dense/gated measurements per process")
    p.add_argument("--processes", type=int, default=3,
                   help="fresh processes to measure in: the ratio varies more between processes than within one")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds for the default demo")
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc malloc as it is (see allocator.py)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(ratio_in_this_process(args.threads, args.repeats, not args.no_malloc_tuning)))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch "
          f"threads, torch {torch.__version__}")
    ratios = []
    for i in range(args.processes):
        cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--repeats", str(args.repeats)]
        out = subprocess.run(cmd + (["--no-malloc-tuning"] if args.no_malloc_tuning else []), check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        ratios.append(r["gated"] / r["dense"])
        print(f"  process {i + 1}: dense {r['dense']:.0f}, gated {r['gated']:.0f} images/s, ratio {ratios[-1]:.3f}"
              f" (malloc tuned: {r['tuned']})")
    print(f"train images/s with gates / without, {DEFAULT_MODEL} batch 128: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f} over {args.processes} processes (target >= 0.9)")
    if args.skip_demo:
        return
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        cfg = TrainConfig(threads=args.threads, seed=seed)
        t0 = time.perf_counter()
        summary = Trainer(cfg).run()
        wall = time.perf_counter() - t0
        drop = 100 * (summary["teacher_accuracy"] - summary["pruned_accuracy"])
        print(f"default demo, seed {seed} ({cfg.prune_epochs} prune + {cfg.finetune_epochs} fine-tune epochs, "
              f"B = {cfg.budget}): wall {wall:.1f} s (target <= 90 s), V/V0 {summary['volume_ratio']:.4f}, "
              f"teacher {100 * summary['teacher_accuracy']:.2f} %, pruned {100 * summary['pruned_accuracy']:.2f} %, "
              f"drop {drop:.2f} points (target <= 2), steps over budget {summary['steps_over_budget']}")


if __name__ == "__main__":
    main()
