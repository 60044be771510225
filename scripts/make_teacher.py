"""Regenerate a shipped teacher: bar_core/assets/teachers/<model>-<dataset>.pt.

BAR prunes a trained network; the default demo prunes resnet8 on the subset, bench/bench_methods.py
resnet8 and resnet20 on the full Fashion-MNIST. Deterministic for the seed on CPU (same torch build
and thread count). Run from the repo root:
    .venv/bin/python scripts/make_teacher.py [--model resnet20] [--dataset fashion-mnist]
"""
import argparse

from bar_core.checkpoint import default_teacher_path
from bar_core.pretrain import train_teacher

RECIPE = {"epochs": 15, "lr": 2e-3, "batch_size": 128, "augment": False, "seed": 0, "threads": 2}

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="resnet8")
    p.add_argument("--dataset", default="fashion-mnist-subset")
    args = p.parse_args()
    out = default_teacher_path(args.model, args.dataset)
    result = train_teacher(args.model, args.dataset, out, log=print, **RECIPE)
    print(f"wrote {out}: test accuracy {100 * result['accuracy']:.2f}%")
