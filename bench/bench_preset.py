"""A preset headless, capped, and what its full length would take here (printing numbers; not a test):

Trains the preset (bar_core/presets.py) for one epoch of each of its phases, each capped at --steps
steps, with the trainer the CLI and the dashboard use; reports per phase the training images/s
(median of the steps' own images/s, and steps ÷ wall time between the phase's first and last step,
which counts the per-step records and checkpoints too) and the seconds one evaluation of the test set
takes; then projects the preset's full epochs (every step of every epoch, one evaluation per epoch) at
those speeds. The dashboard's overhead on top is what bench/bench_app.py measures (it needs the app
and a browser).

    python3 bench/bench_preset.py --preset paper --dataset synthetic-cifar --json preset.json   # a GPU host
    .venv/bin/python bench/bench_preset.py --preset quick --steps 20                            # this CPU
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import bar_core  # noqa: F401
except ImportError:  # python3 bench/bench_preset.py from a clone that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bar_core.estimate import duration_text
from bar_core.presets import PRESETS, preset
from bar_core.runs import RunFolder
from bar_core.trainer import Trainer


def capped(name: str, steps: int, **changes):
    """The preset with one epoch per phase of at most `steps` steps, and the full config beside it."""
    full = preset(name).config.replace(**changes)
    short = full.replace(max_steps_per_epoch=steps, extra_prune_steps=0,
                         pretrain_epochs=min(full.pretrain_epochs, 1), prune_epochs=1,
                         finetune_epochs=min(full.finetune_epochs, 1))
    return full, short.validate()


def measure(cfg, folder: Path) -> tuple[dict, Trainer]:
    """Per phase: steps, median images/s of its steps, images/s over its wall time, evaluation seconds."""
    trainer = Trainer(cfg, RunFolder.create(folder, cfg)).prepare()
    arrivals: list[tuple[str, str, float, float]] = []  # (kind, phase, perf_counter, images/s)
    trainer.subscribe(lambda r: arrivals.append((r.kind, getattr(r, "phase", ""), time.perf_counter(),
                                                 getattr(r, "images_per_s", float("nan")))))
    summary = trainer.run()
    if summary["state"] != "done":
        raise SystemExit(f"the capped run ended {summary['state']}: {summary.get('error')}")
    phases = {}
    for name in dict.fromkeys(p for k, p, _, _ in arrivals if k == "step"):
        steps = [(t, ips) for k, p, t, ips in arrivals if k == "step" and p == name]
        last_step = steps[-1][0]
        evals = [t for k, p, t, _ in arrivals if k == "epoch" and p == name and t >= last_step]
        wall = steps[-1][0] - steps[0][0]
        phases[name] = {"steps": len(steps), "median_images_per_s": statistics.median(i for _, i in steps),
                        "wall_images_per_s": (len(steps) - 1) * cfg.batch_size / wall if wall > 0 else float("nan"),
                        "evaluation_s": evals[0] - last_step if evals else float("nan")}
    return phases, trainer


def project(full, phases: dict, steps_per_epoch: int) -> dict:
    """Seconds the full preset would take at the measured speeds: its epochs × (steps + one evaluation)."""
    epochs = {"pretrain": full.pretrain_epochs if full.teacher == "none" else 0,
              "prune": full.prune_epochs, "finetune": full.finetune_epochs}
    out = {}
    for name, n in epochs.items():
        if n and name in phases:
            m = phases[name]
            per_epoch = steps_per_epoch * full.batch_size / m["wall_images_per_s"] + m["evaluation_s"]
            out[name] = {"epochs": n, "seconds": n * per_epoch}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="paper", choices=list(PRESETS))
    ap.add_argument("--dataset", help="instead of the preset's (synthetic-cifar stands in for CIFAR-10)")
    ap.add_argument("--device", help="instead of the preset's (auto: CUDA when available)")
    ap.add_argument("--precision", help="instead of the preset's: fp32 or bf16")
    ap.add_argument("--steps", type=int, default=100, help="steps per phase (default: 100)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    changes = {k: getattr(args, k) for k in ("dataset", "device", "precision") if getattr(args, k)}
    full, short = capped(args.preset, args.steps, **changes)
    with tempfile.TemporaryDirectory() as tmp:
        phases, trainer = measure(short, Path(tmp) / "run")
    device = trainer.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    steps_per_epoch = trainer.data.num_train_batches(full.batch_size)
    if full.max_steps_per_epoch:  # a preset that caps its epochs (smoke)
        steps_per_epoch = min(steps_per_epoch, full.max_steps_per_epoch)
    projected = project(full, phases, steps_per_epoch)
    print(f"preset {args.preset} ({full.model} on {full.dataset}, batch {full.batch_size}, precision "
          f"{full.precision}) on {device} ({name}), torch {torch.__version__}; {args.steps} steps per phase")
    for phase, m in phases.items():
        print(f"  {phase:<9} {m['steps']:>4} steps: {m['median_images_per_s']:8.0f} images/s per step, "
              f"{m['wall_images_per_s']:8.0f} over the wall; one evaluation {m['evaluation_s']:.2f} s")
    total = sum(p["seconds"] for p in projected.values())
    parts = ", ".join(f"{k} {v['epochs']} epochs {duration_text(v['seconds'])}" for k, v in projected.items())
    print(f"projected full preset ({steps_per_epoch} steps per epoch): {duration_text(total)} ({parts})")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "config": full.to_dict(), "device": str(device),
                                         "device_name": name, "torch": torch.__version__, "phases": phases,
                                         "steps_per_epoch": steps_per_epoch, "projected": projected,
                                         "projected_seconds": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
