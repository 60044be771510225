"""Budget sweep wall time, one run at a time vs `--workers N` (printing numbers; not a test).

A sweep of the default demo (resnet8 on the shipped Fashion-MNIST subset, from the shipped teacher) at
budgets 1/2, 1/4, 1/8, 1/16: once with one worker (this process's torch threads), once with
`--workers N` (N processes, cores // N threads each), each into a fresh folder. Prints both wall times,
their ratio, and how far the two sweeps' outcomes differ (threads change the float sums a little).
The full benchmark takes several minutes on 2 cores; options it does not know go to every run:

    .venv/bin/python bench/bench_sweep.py [--workers 2] [--budgets 1/2,1/4,1/8,1/16] [--keep DIR]
    .venv/bin/python bench/bench_sweep.py --max-steps-per-epoch 3      # a quick check that it works
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def timed_sweep(out: Path, budgets: str, workers: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "bar_core", "sweep", "--budgets", budgets, "--out", str(out), "--quiet",
           "--workers", str(workers), *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"sweep with {workers} worker(s) failed (exit code {r.returncode}):\n{r.stderr[-2000:]}")
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", default="1/2,1/4,1/8,1/16")
    p.add_argument("--workers", type=int, default=2, help="workers of the parallel sweep (default: 2)")
    p.add_argument("--keep", help="write the two sweeps here (seq/, par/) instead of a temporary folder")
    args, extra = p.parse_known_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; budgets {args.budgets}"
          + (f"; run options {' '.join(extra)}" if extra else "; the default demo"), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        seq, par = root / "seq", root / "par"
        for path in (seq, par):
            if path.exists():
                sys.exit(f"{path} exists; choose another --keep folder")
        t_seq = timed_sweep(seq, args.budgets, 1, extra)
        print(f"1 worker:           {t_seq:7.1f} s", flush=True)
        t_par = timed_sweep(par, args.budgets, args.workers, extra)
        print(f"{args.workers} workers:          {t_par:7.1f} s", flush=True)
        print(f"speedup:            {t_seq / t_par:7.2f}x")
        a, b = pd.read_csv(seq / "sweep.csv"), pd.read_csv(par / "sweep.csv")
        for col in ("volume_ratio", "pruned_accuracy"):
            print(f"max |{col} difference|: {(a[col] - b[col]).abs().max():.4f}")
        print(b[["name", "state", "budget", "volume_ratio", "pruned_accuracy", "wall_seconds"]].to_string(index=False))


if __name__ == "__main__":
    main()
