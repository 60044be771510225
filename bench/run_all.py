"""`make bench`: every benchmark in bench/, one after the other, printing their numbers.

Run it on a quiet machine: with anything else on the second core, two torch threads collapse and
every number here with them.
"""
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ORDER = ["bench_core.py", "bench_pruned.py", "bench_app.py"]
# Real BAR runs at budgets 1/2, 1/4, 1/8 give the pruned benchmark its gate patterns; the preset
# benchmark times the quick demo here (the paper preset is for a GPU: bench/gpu_session.sh).
ARGS = {"bench_pruned.py": ["--train", "bench/results/pruned-runs"],
        "bench_preset.py": ["--preset", "quick", "--steps", "50"]}
GPU_ONLY = {"bench_gpu.py"}  # CIFAR-sized networks, compiled: hours on 2 CPU cores; bench/gpu_session.sh runs it

if __name__ == "__main__":
    failed = []
    for name in ORDER + sorted(p.name for p in HERE.glob("bench_*.py") if p.name not in ORDER):
        if not (HERE / name).is_file():
            continue
        if name in GPU_ONLY and not torch.cuda.is_available():
            print(f"\n=== {name}: skipped, no CUDA GPU here (bash bench/gpu_session.sh on one) ===", flush=True)
            continue
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name), *ARGS.get(name, [])], cwd=HERE.parent).returncode:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
