"""How fast the runs table opens with many runs: N run folders (copies of one real tiny run), then the
catalog scan, the table frame, and the Runs page drawn in AppTest (the server's side of opening it).

    python bench/bench_catalog.py [--runs 500] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bar_core.catalog import rows_frame, scan_runs
from bar_core.config import TrainConfig
from bar_core.job import JobManager

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")


def make_runs(root: Path, n: int) -> None:
    template = root / "template"
    cfg = TrainConfig(dataset="synthetic", teacher="none", pretrain_epochs=1, prune_epochs=1, finetune_epochs=1,
                      max_steps_per_epoch=3, batch_size=32, test_limit=200, threads=1)
    job = JobManager(root).start(cfg, name="template")
    assert job.join(300) and job.state == "done", job.state
    runs = root / "runs"
    runs.mkdir()
    for i in range(n):
        shutil.copytree(template, runs / f"run-{i:04d}")


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_runs(root, args.runs)
        runs = root / "runs"
        scan = timed(lambda: scan_runs(runs), args.repeats)
        frame = timed(lambda: rows_frame(scan_runs(runs)), args.repeats)

        from streamlit.testing.v1 import AppTest

        os.environ["BAR_RUNS_DIR"] = str(runs)

        def page():
            at = AppTest.from_file(APP, default_timeout=120)
            at.query_params["page"] = "runs"
            at.run()
            assert not at.exception, at.exception
            assert len(at.dataframe[0].value) == args.runs

        page()  # imports and the first run of the script
        drawn = timed(page, args.repeats)
    print(f"{args.runs} run folders ({os.cpu_count()} cores):")
    for name, xs in (("catalog scan", scan), ("scan + table frame", frame), ("Runs page drawn (AppTest)", drawn)):
        print(f"  {name:<28} median {1000 * statistics.median(xs):7.1f} ms  (min {1000 * min(xs):.1f}, "
              f"max {1000 * max(xs):.1f})")


if __name__ == "__main__":
    main()
