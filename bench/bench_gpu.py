"""Gated vs dense training throughput on a GPU (printing numbers; not a test):

Training images/s of each model with Hard Concrete gates (`build_model(name, 3, 10, gated=True)`)
divided by that of its dense twin (`gated=False`), on CIFAR-shaped synthetic batches already on the
device (batch 128, 3×32×32), in four modes: eager or `torch.compile`d (in place, `model.compile`),
each in fp32 and in bf16 autocast, channels-last by default. The step is the trainer's prune step:
Adam on the weights (lr 1e-3, weight decay 5e-4) and, for the gated network, a second Adam on the
gates' log α (lr 0.1, no decay), loss = cross-entropy + λ·L_S (area-weighted expected volume).
Target: ratio >= 0.9 in at least one mode for every model.

Dense and gated are timed in alternating rounds and the medians reported; a mode that fails (no C
compiler for inductor, no bf16 kernels) is recorded with its error and the other rows go on.
The JSON rows also carry dense_graphs / gated_graphs (graphs dynamo compiled in the warm-up: 1 = no
graph break), recompiled_while_timed, and each network's own compile + warm-up seconds.
    python3 bench/bench_gpu.py --json gpu.json
    python3 bench/bench_gpu.py --device cpu --models resnet8 --batch 32 --steps 5 --warmup 2 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:
    import bar_core  # noqa: F401
except ImportError:  # python3 bench/bench_gpu.py from a clone that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bar_core.losses import l0_objective
from bar_core.models import MODELS, build_model, gate_parameters, weight_parameters
from bar_core.precision import autocast
from bar_core.volume import expected_volume, measure_areas

# mode name -> (compiled, precision)
MODES: dict[str, tuple[bool, str]] = {
    "eager-fp32": (False, "fp32"),
    "eager-bf16": (False, "bf16"),
    "compile-fp32": (True, "fp32"),
    "compile-bf16": (True, "bf16"),
}
DEFAULT_MODELS = ("resnet56", "wrn16_4", "wrn16_8")
LR, WEIGHT_DECAY, GATE_LR = 1e-3, 5e-4, 0.1
LAM = 2e-6            # TrainConfig's default λ, in units of the area-weighted volume
DISTINCT_BATCHES = 4  # cycled, so no step reuses the previous step's input
TARGET = 0.9


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS, metavar="MODEL",
                   help=f"from bar_core.models.MODELS (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), metavar="MODE",
                   help=f"any of {' '.join(MODES)} (default: all)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="steps per timed round")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per network first (compilation happens here)")
    p.add_argument("--rounds", type=int, default=5, help="alternating dense/gated rounds; medians are reported")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (aot_eager needs no C compiler)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep NCHW (default: channels-last model and inputs)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the rows and the machine here")
    args = p.parse_args(argv)
    for name in ("batch", "steps", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be at least 0")
    return args


def machine_info(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return {"device": str(device), "name": name, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cuda": torch.version.cuda}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batches(device: torch.device, batch: int, channels_last: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A few distinct CIFAR-shaped batches (random normal images, labels 0..9) on the device."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for _ in range(DISTINCT_BATCHES):
        x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
        out.append((x, torch.randint(0, 10, (batch,), device=device)))
    return out


def make_net(name: str, gated: bool, device: torch.device, channels_last: bool, sample: torch.Tensor) -> nn.Module:
    """The network on the device in training mode; the gated one with its gates' map areas measured
    (what expected_volume weighs them by), before any compilation."""
    torch.manual_seed(0)
    model = build_model(name, 3, 10, gated=gated).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if gated:
        measure_areas(model, sample)
    return model.train()


def make_step(model: nn.Module, gated: bool, precision: str, device: torch.device) -> Callable:
    """One training step on (x, y), as the trainer's prune step does it (without its bookkeeping)."""
    opts = [torch.optim.Adam(weight_parameters(model), lr=LR, weight_decay=WEIGHT_DECAY)]
    if gated:
        opts.append(torch.optim.Adam(gate_parameters(model), lr=GATE_LR, weight_decay=0.0))

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):  # the trainer's: bar_core/precision.py
            loss = F.cross_entropy(model(x), y)
            if gated:
                loss = l0_objective(loss, expected_volume(model, True), LAM)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()
        return loss

    return step


def run_steps(step: Callable, batches: list, steps: int, device: torch.device) -> float:
    """Seconds for `steps` steps, the device synchronised before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    synchronize(device)
    return time.perf_counter() - t0


def graphs_compiled() -> int | None:
    """Graphs dynamo has compiled since the last reset (None if this torch does not say)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - a private counter; the number is a bonus
        return None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def measure(name: str, mode: str, args: argparse.Namespace, device: torch.device) -> dict:
    """One row: both networks built, warmed up (and compiled), then timed in alternating rounds."""
    compiled, precision = MODES[mode]
    row = {"model": name, "mode": mode, "precision": precision, "compiled": compiled,
           "channels_last": args.channels_last, "batch": args.batch, "dense_images_per_s": None,
           "gated_images_per_s": None, "ratio": None, "warmup_s": None, "dense_warmup_s": None,
           "gated_warmup_s": None, "dense_graphs": None, "gated_graphs": None, "recompiled_while_timed": None,
           "error": None}
    try:
        if compiled:
            torch._dynamo.reset()  # nn.Module.compile shares one code object: keep each row's cache its own
            from torch._dynamo.utils import counters
            counters.clear()
        torch.manual_seed(0)
        batches = make_batches(device, args.batch, args.channels_last)
        steps = {}
        for kind in ("dense", "gated"):
            model = make_net(name, kind == "gated", device, args.channels_last, batches[0][0])
            if compiled:
                model.compile(backend=args.compile_backend)
            steps[kind] = make_step(model, kind == "gated", precision, device)
            before = graphs_compiled() if compiled else None
            row[f"{kind}_warmup_s"] = run_steps(steps[kind], batches, args.warmup, device)
            if before is not None:
                after = graphs_compiled()
                row[f"{kind}_graphs"] = after - before if after is not None else None
        row["warmup_s"] = row["dense_warmup_s"] + row["gated_warmup_s"]
        graphs_after_warmup = graphs_compiled() if compiled else None
        times: dict[str, list[float]] = {"dense": [], "gated": []}
        for _ in range(args.rounds):  # interleaved, so drift on the machine hits both alike
            for kind in ("dense", "gated"):
                dt = run_steps(steps[kind], batches, args.steps, device)
                times[kind].append(args.steps * args.batch / dt)
        for kind in ("dense", "gated"):
            row[f"{kind}_images_per_s"] = statistics.median(times[kind])
        row["ratio"] = row["gated_images_per_s"] / row["dense_images_per_s"]
        if graphs_after_warmup is not None:
            row["recompiled_while_timed"] = graphs_compiled() != graphs_after_warmup
    except Exception as exc:  # noqa: BLE001 - one failing mode must not lose the other rows
        row["error"] = one_line(exc)
    return row


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_row(row: dict) -> str:
    line = (f"{row['model']:<10} {row['mode']:<13} {_num(row['dense_images_per_s'], '.0f'):>9} "
            f"{_num(row['gated_images_per_s'], '.0f'):>9} {_num(row['ratio'], '.3f'):>6} "
            f"{_num(row['warmup_s'], '.1f'):>8}")
    if row["gated_graphs"] is not None or row["dense_graphs"] is not None:
        line += f"  graphs dense {row['dense_graphs']}, gated {row['gated_graphs']}"
    if row["recompiled_while_timed"]:
        line += " (recompiled while timed: raise --warmup)"
    if row["error"]:
        line += f"  ERROR {row['error']}"
    return line


def best_modes(rows: list[dict]) -> dict[str, dict]:
    """Per model, its row with the highest ratio (models whose every mode failed are left out)."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["ratio"] is not None and (row["model"] not in best or row["ratio"] > best[row["model"]]["ratio"]):
            best[row["model"]] = row
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(device)
    layout = "channels-last" if args.channels_last else "NCHW"
    print(f"machine: {machine['name']} ({machine['device']}), torch {machine['torch']}, {machine['threads']} torch "
          f"threads; batch {args.batch} 3x32x32, {layout}, compile backend {args.compile_backend}, "
          f"{args.rounds} rounds x {args.steps} steps after {args.warmup} warm-up steps", flush=True)
    print(f"{'model':<10} {'mode':<13} {'dense/s':>9} {'gated/s':>9} {'ratio':>6} {'warmup s':>8}", flush=True)
    rows = []
    for name in args.models:
        for mode in args.modes:
            rows.append(measure(name, mode, args, device))
            print(format_row(rows[-1]), flush=True)
    best = best_modes(rows)
    for name in args.models:
        if name in best:
            r = best[name]
            verdict = "meets" if r["ratio"] >= TARGET else "misses"
            print(f"best ratio for {name}: {r['mode']} {r['ratio']:.3f} ({verdict} the target >= {TARGET})")
        else:
            print(f"best ratio for {name}: none, every mode failed")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
