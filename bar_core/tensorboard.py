"""TensorBoard event files of a run, for comparing runs there: `tensorboard --logdir DIR`.

With the setting `tensorboard` = DIR the trainer subscribes a `TensorBoardLog`, which writes the run's
records into DIR/<run name>: the run folder's name ("<sweep>/<run>" for a run inside a sweep folder, a
timestamped name for a run without a folder). Runs pointed at the same DIR are then separate runs in
TensorBoard, side by side. The tags (after the "/": the metrics.csv and epochs.csv column names):

    budget/volume  budget/volume_ratio                              every step
    budget/budget_b  budget/barrier_a  budget/barrier_f             every prune step (undefined elsewhere)
    train/loss  train/loss_data  train/loss_sparsity                every step
    train/lr  train/gate_lr  train/images_per_s                     every step
    epoch/test_acc  epoch/test_loss  epoch/train_loss               every epoch
    epoch/kept_channels  epoch/volume_ratio                         every epoch
    gates/<layer>      histogram of P(z > 0) over the layer's channels, every epoch
    config             the run's config.json as text (each session: a resumed one may change device, threads)
    hparams            the settings that decide what is computed, with test_acc, volume_ratio, kept_channels

The x axis is the training step, metrics.csv's `step`. An epoch's values sit at the last step it
trained (epoch 0, before pruning, at step 0), so that a session resumed at step S, whose writer is
opened with purge_step=S, hides exactly the steps a stopped or killed session wrote after its
checkpoint and keeps the epochs before it: every step shows once.

tensorboard is an optional dependency (`pip install bar-explorer[tensorboard]`): `check()` raises
ConfigError when it is missing or DIR cannot be written, and Trainer.prepare calls it before anything
is created.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .config import SETTINGS, ConfigError, TrainConfig
from .records import EpochRecord, Record, StartRecord, StepRecord

MISSING = "tensorboard is not installed; pip install tensorboard (or bar-explorer[tensorboard])"

# (tag, record field), in the order TensorBoard lists them within a group.
STEP_TAGS = (("budget/volume", "volume"), ("budget/volume_ratio", "volume_ratio"),
             ("train/loss", "loss"), ("train/loss_data", "loss_data"), ("train/loss_sparsity", "loss_sparsity"),
             ("train/lr", "lr"), ("train/gate_lr", "gate_lr"), ("train/images_per_s", "images_per_s"))
PRUNE_TAGS = (("budget/budget_b", "budget_b"), ("budget/barrier_a", "barrier_a"), ("budget/barrier_f", "barrier_f"))
EPOCH_TAGS = (("epoch/test_acc", "test_acc"), ("epoch/test_loss", "test_loss"), ("epoch/train_loss", "train_loss"),
              ("epoch/kept_channels", "kept_channels"), ("epoch/volume_ratio", "volume_ratio"))
HPARAM_METRICS = ("epoch/test_acc", "epoch/volume_ratio", "epoch/kept_channels")
HIST_BINS = np.linspace(0.0, 1.0, 21)  # P(z > 0) lies in [0, 1]: fixed bins compare across epochs and runs
FLUSH_SECS = 5  # a TensorBoard open next to a running job sees it within seconds (torch's default is 120)


def _summary_writer():
    """torch's SummaryWriter class; ConfigError (MISSING) when the tensorboard package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(MISSING) from None
    return SummaryWriter


def check(folder: str) -> None:
    """Refuse, before a run starts, a `tensorboard` setting this machine cannot honour: the package
    missing, the folder a file, or no right to create or write it."""
    _summary_writer()
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"tensorboard must be a folder, got {folder!r} (a file)")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"tensorboard folder {folder!r} cannot be written ({str(existing)!r} is not writable)")


def run_name(run_folder=None, cfg: TrainConfig | None = None) -> str:
    """The run's subfolder of the TensorBoard folder: the run folder's name, with its sweep folder's
    in front inside a sweep (sweeps name their runs alike), or a timestamped name without a folder."""
    if run_folder is None:
        from .runs import default_run_name
        return default_run_name(cfg or TrainConfig())
    from .catalog import is_sweep
    path = Path(run_folder.path).absolute()
    return f"{path.parent.name}/{path.name}" if is_sweep(path.parent) else path.name


class TensorBoardLog:
    """A trainer subscriber writing the run's records as TensorBoard event files in folder/name.
    The writer opens on the start record (with purge_step = the session's first step) and closes on
    the end record."""

    def __init__(self, folder: str | os.PathLike, name: str):
        self.log_dir = Path(folder).expanduser() / name
        self.writer = None

    def __call__(self, r: Record) -> None:
        kind = r.kind
        if kind == "step":
            self._step(r)
        elif kind == "epoch":
            self._epoch(r)
        elif kind == "start":
            self._start(r)
        elif kind == "end":
            self.close()

    def _start(self, r: StartRecord) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        self.close()
        self._summary = Summary
        # purge_step also on a fresh run (0): an earlier run of the same name (--overwrite) is hidden
        self.writer = _summary_writer()(log_dir=str(self.log_dir), purge_step=r.resumed_at, flush_secs=FLUSH_SECS)
        text = json.dumps(r.config, indent=2, default=str)
        # four spaces make a Markdown code block: shown verbatim, nothing in it rendered
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), r.resumed_at)
        if r.resumed_at == 0:
            self._hparams(r.config)

    def _hparams(self, config: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        # where a run ran (device, threads, this folder) is no hyperparameter; unset ones have no value
        values = {s.name: config[s.name] for s in SETTINGS
                  if not s.resumable and isinstance(config.get(s.name), (bool, int, float, str))}
        fw = self.writer._get_file_writer()
        for summary in hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0)):
            fw.add_summary(summary, 0)

    def _step(self, r: StepRecord) -> None:
        # One event holding every scalar of the step: 6x cheaper than an add_scalar per tag (80 against
        # 450 us a step on a 2-core VM), for the same float32 simple_value that add_scalar writes.
        Summary = self._summary
        tags = STEP_TAGS + PRUNE_TAGS if r.phase == "prune" else STEP_TAGS
        values = [Summary.Value(tag=tag, simple_value=getattr(r, name)) for tag, name in tags]
        self.writer._get_file_writer().add_summary(Summary(value=values), r.step)

    def _epoch(self, r: EpochRecord) -> None:
        step = max(r.step - 1, 0)  # the epoch's last step: see the module docstring
        for tag, name in EPOCH_TAGS:
            value = getattr(r, name)
            if name == "train_loss" and (r.phase == "start" or math.isnan(value)):
                continue  # epoch 0 trained nothing: no train loss to chart
            self.writer.add_scalar(tag, value, step)
        for layer, arrays in r.gates.items():
            prob = arrays.get("prob_open")
            if prob is not None and prob.size:
                self.writer.add_histogram(f"gates/{layer}", prob, step, bins=HIST_BINS)
        self.writer.flush()  # each epoch ends in a checkpoint; the event files keep up with it

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
