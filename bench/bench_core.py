"""Core benchmarks (printing numbers; not a test):

1. Training images/s of the default model with gates vs without (target: ratio >= 0.9).
2. Wall time of the default demo, prune + fine-tune from the shipped teacher to B = 1/4
   (target <= 90 s on 2 CPU cores), with its accuracy next to the teacher's (target: within 2 points).

Run on a quiet machine: with anything else on the second core, two torch threads collapse.
    .venv/bin/python bench/bench_core.py [--threads 2] [--repeats 5] [--skip-demo]
"""
import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bar_core.config import TrainConfig  # noqa: E402
from bar_core.data import load_data  # noqa: E402
from bar_core.models import DEFAULT_MODEL, build_model  # noqa: E402
from bar_core.trainer import Trainer  # noqa: E402


def train_throughput(gated: bool, data, steps: int = 40, batch: int = 128) -> float:
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-demo", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    data = load_data()
    dense, gated = [], []
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        dense.append(train_throughput(False, data))
        gated.append(train_throughput(True, data))
    d, g = statistics.median(dense), statistics.median(gated)
    print(f"train images/s, {DEFAULT_MODEL} batch 128 (median of {args.repeats}): dense {d:.0f}, gated {g:.0f}, "
          f"ratio {g / d:.3f} (target >= 0.9)")
    if args.skip_demo:
        return
    cfg = TrainConfig(threads=args.threads)
    t0 = time.perf_counter()
    summary = Trainer(cfg).run()
    wall = time.perf_counter() - t0
    drop = 100 * (summary["teacher_accuracy"] - summary["pruned_accuracy"])
    print(f"default demo ({cfg.prune_epochs} prune + {cfg.finetune_epochs} fine-tune epochs, B = {cfg.budget}): "
          f"wall {wall:.1f} s (target <= 90 s), V/V0 {summary['volume_ratio']:.4f}, "
          f"teacher {100 * summary['teacher_accuracy']:.2f} %, pruned {100 * summary['pruned_accuracy']:.2f} %, "
          f"drop {drop:.2f} points (target <= 2), steps over budget {summary['steps_over_budget']}")


if __name__ == "__main__":
    main()
