"""What a little load beside the trainer costs it, and whether OpenMP's wait policy helps (prints numbers).

The classroom bench (bench_viewers.py) finds that 30 viewers cost training more than their CPU share.
This measures the mechanism on its own: the default demo's prune step (gated resnet8, batch 128,
torch's two threads) for --seconds, alone and beside one process that keeps part of a core busy
(a Python busy loop for `duty` × 10 ms of every 10 ms, about what a server answering a class does),
under each libgomp setting given (torch's CPU wheel runs its threads on libgomp, which reads its
environment when it loads, so every measurement is its own process). Rounds are interleaved.

    .venv/bin/python bench/bench_contention.py [--duty 0.3] [--seconds 20] [--rounds 2]
        [--env "" OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=10000] [--nice 0 10 19]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time


def busy(duty: float, nice: int, stop, cycles) -> None:
    """Busy for duty × 10 ms, then asleep for the rest of 10 ms, until `stop`; counts its cycles (100 a
    second when it gets the CPU it asks for)."""
    os.nice(nice)
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < duty * 0.01:
            pass
        time.sleep((1 - duty) * 0.01)
        cycles.value += 1


def measure(seconds: float, duty: float, nice: int) -> tuple[float, float]:
    """Training images/s over `seconds` of prune steps (the first step, which warms up, not counted),
    and the share of its cycles the load got done (1.0: all it asked for)."""
    from bar_core.config import TrainConfig
    from bar_core.trainer import Trainer

    stop, cycles = mp.Event(), mp.Value("l", 0)
    load = mp.Process(target=busy, args=(duty, nice, stop, cycles)) if duty > 0 else None
    if load:
        load.start()
    trainer = Trainer(TrainConfig(threads=2, prune_epochs=50, finetune_epochs=0)).prepare()
    marks: list[float] = []

    def on(record) -> None:
        if record.kind == "step" and len(marks) < 2:
            if not marks or time.perf_counter() - marks[0] >= seconds:
                marks.append(time.perf_counter())
            steps[0] += 1
            if len(marks) == 2:
                trainer.stop()

    steps = [0]
    trainer.subscribe(on)
    cycles.value, started = 0, time.perf_counter()
    trainer.run()
    stop.set()
    if load:
        load.join()
    done = cycles.value / (100 * (time.perf_counter() - started)) if load else 1.0
    return (steps[0] - 1) * trainer.config.batch_size / (marks[1] - marks[0]), done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duty", type=float, default=0.3, help="the busy share of one core beside the trainer")
    p.add_argument("--nice", nargs="+", type=int, default=[0], help="the load's nice values to compare")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--env", nargs="+", default=["", "OMP_WAIT_POLICY=PASSIVE", "GOMP_SPINCOUNT=10000"],
                   help='libgomp settings to compare, KEY=VALUE ("" for torch\'s default)')
    p.add_argument("--child", nargs=3, type=float, metavar=("SECONDS", "DUTY", "NICE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        seconds, duty, nice = args.child
        print(json.dumps(measure(seconds, duty, int(nice))))
        return
    cases = [(setting, 0.0, 0) for setting in args.env] + [(s, args.duty, n) for s in args.env for n in args.nice]
    results: dict[tuple, list[tuple[float, float]]] = {}
    for r in range(args.rounds):  # every case once a round: drift hits them alike
        for case in cases:
            setting, duty, nice = case
            env = dict(os.environ)
            env.update(dict([setting.split("=", 1)]) if setting else {})
            out = subprocess.run([sys.executable, __file__, "--child", str(args.seconds), str(duty), str(nice)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            results.setdefault(case, []).append(tuple(json.loads(out.strip().splitlines()[-1])))
            ips, done = results[case][-1]
            print(f"round {r + 1}, {setting or 'default'}, load {duty:.1f} of a core at nice {nice}: {ips:.0f} "
                  f"images/s, the load got {done:.2f} of its cycles", flush=True)
    print("\n| libgomp | load beside the trainer | training images/s (median) | × alone | the load's cycles done |")
    print("|---|---|---|---|---|")
    for setting, duty, nice in cases:
        alone = statistics.median(ips for ips, _ in results[(setting, 0.0, 0)])
        ips = statistics.median(i for i, _ in results[(setting, duty, nice)])
        done = statistics.median(d for _, d in results[(setting, duty, nice)])
        load = f"{duty:.1f} of a core, nice {nice}" if duty else "none"
        print(f"| {setting or 'default (spins)'} | {load} | {ips:,.0f} | {ips / alone:.2f} | "
              f"{done:.2f} |" if duty else f"| {setting or 'default (spins)'} | none | {ips:,.0f} | 1.00 | — |")


if __name__ == "__main__":
    main()
