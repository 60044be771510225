"""BAR against its baselines on the full Fashion-MNIST (printing numbers; not a test).

The paper's experiment at laptop scale: the dense teacher (scripts/make_teacher.py --dataset
fashion-mnist, shipped), pruned by
  - BAR at B ∈ --budgets (λ default),
  - magnitude (Torch-Pruning, BatchNorm-scale importance) to the MACs each BAR run reached,
  - L0 at --l0-lams (it has no budget: λ alone decides where V ends),
every run with the same epochs (--prune-epochs + --finetune-epochs; magnitude fine-tunes for both).
Then λ sensitivity: BAR at B = 1/8 for --bar-lams next to the same L0 runs.

Each run is a run folder under --out; a finished one is read back, an interrupted one continues
from its checkpoint, so the benchmark can be stopped and started again. It writes
docs/results/methods.csv and lambda.csv (one row per run; columns in bar_core/results.py), and the
figures beside them (PNG through kaleido and Debian's Chromium, and HTML).

    make fashion-mnist                     # Debian's dataset-fashion-mnist, once (apt)
    .venv/bin/python bench/bench_methods.py [--seeds 0 1] [--budgets 1/2 ... 1/32] [--model resnet8]
        [--prune-epochs 3] [--finetune-epochs 2] [--out bench/out/methods] [--results docs/results]
        [--methods bar magnitude l0] [--l0-lams ...] [--bar-lams ...] [--figures-only]
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch

from bar_core.config import TrainConfig
from bar_core.job import Job
from bar_core.results import (
    COLUMNS,
    SHIPPED,
    accuracy_figure,
    lambda_figure,
    lambda_markdown,
    methods_markdown,
    read_rows,
    row_from_summary,
)

DATASET = "fashion-mnist"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run(root: Path, name: str, cfg: TrainConfig) -> dict:
    """The run `name` under `root`: read back when done, continued when interrupted, else trained."""
    path = root / name
    summary = _read(path / "summary.json")
    if summary and summary.get("state") == "done":
        return row_from_summary(summary, _read(path / "config.json") or {}, name)
    t0 = time.perf_counter()
    if (path / "checkpoint.pt").is_file():
        job = Job(None, root, continue_run=path)
    else:
        job = Job(cfg, root, name=name, overwrite=True)
    job.start()
    job.join()
    summary = _read(path / "summary.json") or {}
    if summary.get("state") != "done":
        sys.exit(f"{name}: ended {summary.get('state')!r}: {summary.get('error')}")
    row = row_from_summary(summary, _read(path / "config.json") or {}, name)
    print(f"{name:>28}  V/V0 {row['volume_ratio']:.4f}  MACs {row['mac_ratio']:.4f}  acc {100 * row['accuracy']:.2f}%"
          f"  (teacher {100 * row['teacher_accuracy']:.2f}%)  {time.perf_counter() - t0:.0f} s", flush=True)
    return row


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS})
    tmp.replace(path)


def write_figure(fig, path: Path) -> None:
    from bar_core.export_files import html_text, png_bytes
    path.with_suffix(".html").write_text(html_text(fig, plotlyjs="cdn"))
    try:
        path.with_suffix(".png").write_bytes(png_bytes(fig, width=820, height=440, scale=1.5))
    except Exception as exc:  # noqa: BLE001 - no Chromium here: the HTML is still written
        print(f"no PNG for {path.name}: {str(exc).splitlines()[0]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", nargs="+", default=["1/2", "1/4", "1/8", "1/16", "1/32"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--model", default="resnet8")
    p.add_argument("--l0-lams", nargs="+", type=float, default=[1e-6, 1e-5, 1e-4, 1e-3])
    p.add_argument("--bar-lams", nargs="+", type=float, default=[2e-8, 2e-7, 2e-6, 2e-5, 2e-4])
    p.add_argument("--methods", nargs="+", choices=("bar", "magnitude", "l0"), default=["bar", "magnitude", "l0"],
                   help="the methods to run; the rows of the others, and of seeds not in --seeds, are kept from the CSVs in --results "
                        "(to run one method again after a change to it; magnitude alone prunes to the MACs of the BAR rows "
                        "there when their run folders are gone)")
    p.add_argument("--lambda-budget", default="1/8")
    p.add_argument("--prune-epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench/out/methods"))
    p.add_argument("--results", type=Path, default=Path("docs/results"))
    p.add_argument("--skip-lambda", action="store_true")
    p.add_argument("--figures-only", action="store_true",
                   help="train nothing: redraw the figures and print the tables from the CSVs in --results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    base = dict(model=args.model, dataset=DATASET, prune_epochs=args.prune_epochs,
                finetune_epochs=args.finetune_epochs, threads=args.threads)
    lam_budget = float(Fraction(args.lambda_budget))
    planned = set()  # the runs this invocation makes: their rows are replaced, every other row stays as measured
    for seed in args.seeds:
        for text in args.budgets:
            planned |= {f"{m}-b{round(1 / float(Fraction(text)))}-s{seed}" for m in ("bar", "magnitude") if m in args.methods}
        planned |= {f"l0-lam{lam:.0e}-s{seed}" for lam in args.l0_lams if "l0" in args.methods}
        planned |= {f"bar-b{round(1 / lam_budget)}-lam{lam:.0e}-s{seed}" for lam in args.bar_lams
                    if "bar" in args.methods and not args.skip_lambda}

    def kept(row: dict) -> bool:
        return row.get("run") not in planned or row.get("model") != args.model

    recorded = read_rows(args.results / "methods.csv")
    methods = [r for r in recorded if args.figures_only or kept(r)]
    lambdas = [r for r in read_rows(args.results / "lambda.csv") if args.figures_only or args.skip_lambda or kept(r)]

    def save() -> None:
        write_csv(args.results / "methods.csv", methods)
        if lambdas:
            write_csv(args.results / "lambda.csv", lambdas)
        if args.results == Path("docs/results"):  # the app's teaching notes draw the shipped copies
            for name in ("methods", "lambda"):
                if (args.results / f"{name}.csv").is_file():
                    SHIPPED.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(args.results / f"{name}.csv", SHIPPED / f"{name}.csv")

    for seed in [] if args.figures_only else args.seeds:
        for text in args.budgets:
            budget = float(Fraction(text))
            if "bar" not in args.methods and "magnitude" not in args.methods:
                break
            # magnitude is pruned to the MACs of its BAR run, so it needs that run: read back when done, else
            # (magnitude alone) its row in --results, else trained
            name = f"bar-b{round(1 / budget)}-s{seed}"
            row = next((r for r in recorded if r.get("run") == name and r.get("model") == args.model
                        and r.get("epochs") == args.prune_epochs + args.finetune_epochs), None)
            done = (_read(args.out / name / "summary.json") or {}).get("state") == "done"
            bar = row if row and "bar" not in args.methods and not done else \
                run(args.out, name, TrainConfig(budget=budget, seed=seed, **base))
            if "bar" in args.methods:
                methods.append(bar)
                if budget == lam_budget and not args.skip_lambda:
                    lambdas.append(bar)
                save()
            if "magnitude" not in args.methods:
                continue
            mag = run(args.out, f"magnitude-b{round(1 / budget)}-s{seed}",
                      TrainConfig(method="magnitude", mac_ratio=round(bar["mac_ratio"], 6), seed=seed, **base))
            methods.append(mag)
            save()
        for lam in args.l0_lams if "l0" in args.methods else []:
            row = run(args.out, f"l0-lam{lam:.0e}-s{seed}", TrainConfig(method="l0", lam=lam, seed=seed, **base))
            methods.append(row)
            lambdas.append(row)
            save()
        if not args.skip_lambda and "bar" in args.methods:
            for lam in args.bar_lams:
                if lam == TrainConfig().lam:
                    continue  # the methods run at this budget is this one
                lambdas.append(run(args.out, f"bar-b{round(1 / lam_budget)}-lam{lam:.0e}-s{seed}",
                                   TrainConfig(budget=lam_budget, lam=lam, seed=seed, **base)))
                save()
    title = f"{args.model} on the full Fashion-MNIST, {args.prune_epochs} + {args.finetune_epochs} epochs"
    for by in ("volume", "macs"):
        write_figure(accuracy_figure(methods, by, f"{title}: accuracy against pruning factor "
                                                  f"({'MACs' if by == 'macs' else 'activation volume'})"),
                     args.results / f"methods-{by}")
    if lambdas:
        write_figure(lambda_figure(lambdas, lam_budget), args.results / "lambda")
    print(f"{'read' if args.figures_only else 'wrote'} {args.results}/methods.csv ({len(methods)} runs) and lambda.csv ({len(lambdas)} runs)\n")
    print(methods_markdown(methods) + "\n\n" + lambda_markdown(lambdas))


if __name__ == "__main__":
    main()
