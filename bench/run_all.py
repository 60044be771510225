"""`make bench`: every benchmark in bench/, one after the other, printing their numbers.

Run it on a quiet machine: with anything else on the second core, two torch threads collapse and
every number here with them.
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_core.py", "bench_pruned.py", "bench_app.py"]
# Real BAR runs at budgets 1/2, 1/4, 1/8 give the pruned benchmark its gate patterns.
ARGS = {"bench_pruned.py": ["--train", "bench/results/pruned-runs"]}

if __name__ == "__main__":
    failed = []
    for name in ORDER + sorted(p.name for p in HERE.glob("bench_*.py") if p.name not in ORDER):
        if not (HERE / name).is_file():
            continue
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name), *ARGS.get(name, [])], cwd=HERE.parent).returncode:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
