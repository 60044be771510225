"""Does physical pruning pay on a CPU? MAC reduction vs measured speedup of materialised networks.

For each gate pattern (a real BAR run, or a synthetic pattern at a target volume ratio when no run
is given) and with round_to 1 and 8, it prints: V/V0, the MAC ratio (pruned ÷ dense), and for batch
64 and 1 on 1 and 2 threads the measured speedup over the dense network and speedup ÷ MAC reduction
(1.0 = time falls as fast as MACs; the target is ≥ 0.7 at batch 64).

    python bench/bench_pruned.py --runs runs/b2 runs/b4 runs/b8     # run folders (checkpoint.pt + config.json)
    python bench/bench_pruned.py --train runs/bench                   # train one run per budget first
    python bench/bench_pruned.py                                      # synthetic patterns (says so)

Dense and pruned are timed in alternating rounds and medians are reported, because the machine may
be shared: a single timing there is noise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import torch

from bar_core.cost import compare
from bar_core.materialize import materialize, rounding_report
from bar_core.models import DEFAULT_MODEL, build_model, gates
from bar_core.volume import initial_volume, measure_areas, volume

ROOT = Path(__file__).resolve().parent.parent



def load_run(folder: Path) -> tuple[str, torch.nn.Module]:
    """(label, gated model in eval mode) from a run folder's config.json and checkpoint.pt['student']."""
    config = json.loads((folder / "config.json").read_text())
    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)["student"]
    in_channels, classes = state["conv1.weight"].shape[1], state["fc.weight"].shape[0]
    model = build_model(config["model"], in_channels, classes)
    model.load_state_dict(state)
    return f"run {folder.name} (B={config.get('budget')})", model.eval()


def synthetic(model_name: str, input_shape: tuple[int, ...], classes: int, budget: float, seed: int = 0) -> torch.nn.Module:
    """A gated model whose gates close the lowest of random per-channel scores, channel by channel,
    until V ≤ B·V0 — an unstructured stand-in for a BAR run (real runs close whole blocks more often)."""
    torch.manual_seed(seed)
    model = build_model(model_name, input_shape[0], classes).eval()
    measure_areas(model, torch.zeros(1, *input_shape))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, gate in gates(model):
            gate.log_alpha.copy_(torch.rand(gate.num_channels, generator=g) * 4 - 1)
        order = sorted(((float(gate.log_alpha[c]), name, c) for name, gate in gates(model)
                        for c in range(gate.num_channels)))
        by_name = dict(gates(model))
        target = budget * initial_volume(model)
        for _, name, c in order:
            if volume(model) <= target:
                break
            by_name[name].log_alpha[c] = -6.0
    return model


def train_runs(out: Path, budgets: list[str]) -> list[Path]:
    """One `python -m bar_core train` run per budget (the project's trainer; minutes each on CPU)."""
    folders = []
    for b in budgets:
        folder = out / f"b{b.replace('/', '_')}"
        if not (folder / "checkpoint.pt").is_file():
            print(f"training budget {b} into {folder} ...", flush=True)
            subprocess.run([sys.executable, "-m", "bar_core", "train", "--budget", b, "--out", str(folder),
                            "--quiet", "--overwrite"], cwd=ROOT, check=True)
        folders.append(folder)
    return folders


def fmt_row(label: str, round_to: int, c: dict, added: int) -> str:
    cells = [f"{label:<28}", f"{round_to:>2}", f"{c['volume_ratio_gates']:.3f}", f"{c['mac_ratio']:.3f}",
             f"{c['mac_reduction']:5.2f}x", f"{added:>4}"]
    for t in c["timings"]:
        cells.append(f"{t['speedup']:5.2f}x {t['efficiency']:4.2f}")
    return " | ".join(cells)


def threading_notes(label: str, c: dict) -> list[str]:
    """Flag multi-thread timings where the dense net is slower than on one thread: either the other
    core was busy (a shared machine) or each op is too small to split (batch 1). Those speedups
    then measure threading overhead more than pruning."""
    single = {t["batch"]: t["dense_s"] for t in c["timings"] if t["threads"] == 1}
    notes = []
    for t in c["timings"]:
        if t["threads"] > 1 and t["batch"] in single and t["dense_s"] > single[t["batch"]]:
            notes.append(f"  ! {label}, batch {t['batch']}: dense takes {t['dense_s'] * 1e3:.2f} ms on {t['threads']} "
                         f"threads vs {single[t['batch']] * 1e3:.2f} ms on 1 (busy cores, or too little work per op "
                         f"to split): the {t['threads']}-thread speedup mostly measures threading overhead")
    return notes


def times_row(label: str, round_to: int, c: dict) -> str:
    cells = [f"{label:<28}", f"{round_to:>2}"]
    cells += [f"{t['dense_s'] * 1e3:8.2f} {t['pruned_s'] * 1e3:8.2f}" for t in c["timings"]]
    return " | ".join(cells)


def timing_columns(args) -> list[str]:
    """Column names of the timing cells, in the order compare() fills them (g = CUDA-graph replay)."""
    plain = [f"b{b:<3}t{t}" for b in args.batches if b not in args.cuda_graph for t in args.threads]
    return plain + [f"b{b:<3}g " for b in args.cuda_graph for _ in args.threads[:1]]


def header(columns: list[str]) -> str:
    cols = [f"{'pattern':<28}", "rt", "V/V0 ", "MACs ", "MAC red", "+ch "]
    cols += [f"{c} spd  eff" for c in columns]
    return " | ".join(cols)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="*", type=Path, default=[], help="run folders (checkpoint.pt + config.json)")
    ap.add_argument("--train", type=Path, help="train one run per budget into this folder first")
    ap.add_argument("--budgets", nargs="*", default=["1/2", "1/4", "1/8"])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--input", nargs=3, type=int, default=[1, 28, 28], metavar=("C", "H", "W"))
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batches", nargs="*", type=int, default=[64, 1])
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--round-to", nargs="*", type=int, default=[1, 8])
    ap.add_argument("--rounds", type=int, default=7, help="alternating dense/pruned rounds (median reported)")
    ap.add_argument("--repeats", type=int, default=5, help="timings per round (median)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA: e.g. --batches 256 1 --threads 1)")
    ap.add_argument("--cuda-graph", nargs="*", type=int, default=[], metavar="BATCH",
                    help="on CUDA, time these batch sizes as CUDA-graph replays (e.g. --cuda-graph 1)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    folders = list(args.runs) + (train_runs(args.train, args.budgets) if args.train else [])
    input_shape = tuple(args.input)
    if folders:
        patterns = [load_run(f) for f in folders]
    else:
        print("NOTE: no --runs/--train given: using SYNTHETIC gate patterns (random per-channel closing at the "
              "target V/V0), not real BAR runs.\n")
        patterns = [(f"synthetic B={b}", synthetic(args.model, input_shape, args.classes, float(Fraction(b))))
                    for b in args.budgets]

    print(f"input {input_shape}, speedup = dense time / pruned time (median of {args.rounds} alternating rounds), "
          f"eff = speedup / MAC reduction; rt = round_to; +ch = channels added by rounding")
    if args.cuda_graph and not args.device.startswith("cuda"):
        ap.error(f"--cuda-graph needs --device cuda, got --device {args.device}")
    columns = timing_columns(args)
    print(f"device: {args.device}")
    print(header(columns))
    results, notes = [], []
    for label, model in patterns:
        for rt in args.round_to:
            pruned = materialize(model, round_to=rt)
            c = compare(model, pruned, input_shape, batches=[b for b in args.batches if b not in args.cuda_graph],
                        threads=args.threads, rounds=args.rounds, repeats=args.repeats,
                        channels_last=args.channels_last, device=args.device)
            if args.cuda_graph:  # the same table, those batch sizes replayed from a CUDA graph
                g = compare(model, pruned, input_shape, batches=args.cuda_graph, threads=args.threads[:1],
                            rounds=args.rounds, repeats=args.repeats, channels_last=args.channels_last,
                            device=args.device, cuda_graph=True)
                c["timings"] += [{**row, "cuda_graph": True} for row in g["timings"]]
            added = rounding_report(pruned)["added"]
            print(fmt_row(label, rt, c, added), flush=True)
            notes += threading_notes(f"{label} rt={rt}", c)
            results.append({"pattern": label, "round_to": rt, "channels_added": added, **c})
    print("\nmedian ms per forward, dense vs pruned:")
    print(" | ".join([f"{'pattern':<28}", "rt"] + [f"{c}  dense   pruned" for c in columns]))
    for r in results:
        print(times_row(r["pattern"], r["round_to"], r))
    for n in notes:
        print(n)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
