"""`bar sweep ... --ray local|auto|ADDRESS`: a sweep's runs as Ray tasks, one task per run.

Ray (an optional extra: `pip install bar-explorer[ray]`) schedules the tasks on the cluster's CPUs
and GPUs; each task trains one run into the sweep folder, which every node must see at the same path
(a shared file system). Nothing here schedules: the plan, the folders and resuming are the sweep's
own (bar_core/sweep.py), Ray only says where each run trains.
  local    start a Ray instance on this machine for the sweep (and stop it after)
  auto     join the cluster this machine is part of (`ray start --head` / `ray start --address=...`)
  ADDRESS  a cluster's address: host:6379, or ray://host:10001 for Ray Client
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from .config import ConfigError, TrainConfig


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the ray package: pip install 'bar-explorer[ray]' (or ray itself)") from None
    return ray


def train_one(path: str, config: dict, state: str, machine: dict) -> dict:
    """One run of a sweep, as the task trains it: start (or restart, or resume from its checkpoint) the
    run folder `path`. Ray's cancel (the sweep's Ctrl-C) stops it after its step, with a checkpoint."""
    from .runs import RunFolder
    from .trainer import Trainer

    t0 = time.monotonic()
    if state == "resume":
        folder, cfg, ckpt = RunFolder.open_for_resume(Path(path))
        trainer = Trainer(cfg.replace(**machine).validate()).prepare()
        trainer.load_checkpoint_state(ckpt)
    else:
        cfg = TrainConfig.from_dict(config).validate()
        trainer = Trainer(cfg).prepare()
        folder = RunFolder.create(Path(path), cfg, overwrite=state == "restart")
    trainer.run_folder = folder
    result: list[dict] = []
    worker = threading.Thread(target=lambda: result.append(trainer.run()), daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:  # ray.cancel: stop like Ctrl-C, keeping the checkpoint
        trainer.stop()
        worker.join()
    summary = result[0] if result else {"state": "stopped", "error": None}
    return {"state": summary.get("state"), "error": summary.get("error"), "seconds": time.monotonic() - t0}


def train_on_ray(plan, todo, status: dict, address: str, base: TrainConfig, say) -> tuple[bool, int]:
    """Every run of `todo` as a Ray task; (stopped, runs failed). `say` prints a progress line."""
    ray = _ray()
    from .sweep import MACHINE_SETTINGS, _outcome_text, _start_line, _tag

    started_here = address == "local"
    ray.init(address=None if started_here else address, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    cpus = base.threads or 1
    gpus = 1 if base.device.startswith("cuda") else 0
    task = ray.remote(train_one).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    machine = {k: getattr(base, k) for k in MACHINE_SETTINGS}
    refs = {}
    for run in todo:
        config = run.config.replace(threads=cpus).to_dict()
        refs[task.remote(str(plan.run_dir(run)), config, status[run.name], {**machine, "threads": cpus})] = run
        say(_start_line(plan, run, status[run.name]) + f" (Ray task, {cpus} CPU(s){f', {gpus} GPU' if gpus else ''})")
    failed, stopped = 0, False
    try:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                run = refs[ref]
                try:
                    out = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a task that died: one line, the others go on
                    failed += 1
                    say(f"{_tag(plan, run)}: failed in its Ray task: {str(exc).strip().splitlines()[-1]}")
                    continue
                text = _outcome_text(plan.run_dir(run), out["seconds"])[1]
                failed += out["state"] == "error"
                say(f"{_tag(plan, run)}: {text}")
                plan.write_csv()
    except KeyboardInterrupt:
        stopped = True
        say("\nstopping the sweep: its Ray tasks stop after their step and keep a checkpoint ...")
        for ref in pending:
            ray.cancel(ref)
        ray.wait(pending, num_returns=len(pending), timeout=60)
    finally:
        if started_here:
            ray.shutdown()
    return stopped, failed
