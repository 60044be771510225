"""The record schema: the run-folder format it declares, writing and reading back records, older
folders, the trainer's progress in checkpoints, and the progress bar on typed records."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from bar_core.checkpoint import CheckpointError
from bar_core.config import TrainConfig
from bar_core.history import snapshot_from_run
from bar_core.progress import ProgressBar
from bar_core.records import (
    EPOCH_COLUMNS,
    LAYOUT_KEYS,
    METRIC_COLUMNS,
    EndRecord,
    EpochRecord,
    MessageRecord,
    PhaseRecord,
    StartRecord,
    StatusRecord,
    StepRecord,
)
from bar_core.runs import RunFolder, read_records
from bar_core.trainer import Trainer, TrainProgress
from tests.helpers import tiny_config

# The run-folder format as earlier versions wrote it: folders on disk must keep replaying.
OLD_METRIC_COLUMNS = ["step", "phase", "epoch", "loss", "loss_data", "loss_sparsity", "volume", "budget_b",
                      "barrier_a", "barrier_f", "volume_ratio", "lr", "gate_lr", "images_per_s", "over_budget", "time",
                      "barrier_b"]
OLD_EPOCH_COLUMNS = ["epoch", "phase", "step", "test_acc", "test_loss", "train_loss", "teacher_acc", "volume",
                     "volume_ratio", "kept_channels", "total_channels", "wall_seconds"]
OLD_LAYOUT_KEYS = ["v0", "a", "budget_volume", "total_steps", "steps_per_epoch", "layers", "teacher", "data",
                   "device", "threads", "phases"]
OLD_PROGRESS_KEYS = {"step", "phase_index", "epoch_in_phase", "batch_in_epoch", "global_epoch", "steps_over_budget",
                     "extra_steps", "student_initialised", "teacher_accuracy", "wall_seconds"}
PROGRESS_KEYS = OLD_PROGRESS_KEYS | {"last_accuracy", "epoch_losses", "at_wall", "last_f"}  # what checkpoints hold now; older ones lack the new fields


def step(i, phase="prune", **changes):
    values = dict(step=i, phase=phase, epoch=1 + i // 4, loss=1.0 / (i + 1), loss_data=0.5, loss_sparsity=100.0 - i,
                  volume=1000.0 - 10 * i, budget_b=995.0 - 10 * i, barrier_a=900.0, barrier_f=0.1 * i,
                  volume_ratio=1.0 - 0.01 * i, lr=1e-3, gate_lr=0.2, images_per_s=1234.5, over_budget=i % 3 == 0,
                  time=0.25 * i)
    values.update(changes)
    return StepRecord(**values)


def epoch(e, gates):
    return EpochRecord(epoch=e, phase="prune", step=4 * e, test_acc=0.5 + e / 10, test_loss=1.0 / 3,
                       train_loss=float("nan") if e == 2 else 0.7, teacher_acc=None if e == 0 else 0.9,
                       volume=1000.0 - e, volume_ratio=1.0 - e / 1000, kept_channels=40 - e, total_channels=40,
                       wall_seconds=1.5 * e, gates=gates)


def by_kind(records, kind):
    return [r for r in records if r.kind == kind]


def same_record(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "gates":
            assert set(x) == set(y)
            for layer in x:
                for key in x[layer]:
                    np.testing.assert_array_equal(x[layer][key], y[layer][key])
        elif isinstance(x, float):
            assert (math.isnan(x) and math.isnan(y)) or x == y, (f.name, x, y)
        else:
            assert type(x) is type(y) and x == y, (f.name, x, y)


def test_the_declared_columns_are_the_run_folder_format():
    assert list(METRIC_COLUMNS) == OLD_METRIC_COLUMNS
    assert list(EPOCH_COLUMNS) == OLD_EPOCH_COLUMNS
    assert list(LAYOUT_KEYS) == OLD_LAYOUT_KEYS
    assert {f.name for f in dataclasses.fields(TrainProgress)} == PROGRESS_KEYS
    kinds = [StartRecord, PhaseRecord, StepRecord, EpochRecord, StatusRecord, EndRecord]
    assert [k.kind for k in kinds] == ["start", "phase", "step", "epoch", "status", "end"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        step(0).loss = 2.0


def test_records_written_to_a_folder_read_back_as_the_same_records(tmp_path):
    folder = RunFolder.create(tmp_path / "run", TrainConfig())
    rng = np.random.default_rng(0)
    gates = {name: {k: rng.standard_normal(n).astype(np.float32) for k in ("log_alpha", "prob_open", "test_gate")}
             for name, n in (("bn1", 4), ("layer1.0.bn1", 3))}
    written = [
        StartRecord(config=TrainConfig().to_dict(), v0=1000, a=900.5, budget_volume=250.0, total_steps=12,
                    steps_per_epoch=4, layers=[{"name": "bn1", "channels": 4, "area": 64, "height": 8, "width": 8}],
                    teacher="shipped", data={"name": "synthetic", "classes": ["a", "b"], "image_size": [8, 8]},
                    device="cpu", threads=1, phases=[{"name": "prune", "epochs": 3, "start_step": 0, "steps": 12}]),
        PhaseRecord("prune", 0, 3),
        *[step(i) for i in range(4)],
        step(4, budget_b=float("nan"), barrier_a=float("nan"), images_per_s=float("nan")),
        epoch(0, gates), epoch(1, gates), epoch(2, gates),
        StatusRecord("paused", 5), StatusRecord("running", 5), MessageRecord("warning", "V/V0 above the budget", 5),
        MessageRecord("error", "loss became nan at step 5", 5),
        EndRecord("error", {"state": "error", "error": "loss became nan at step 5", "volume_ratio": 0.5, "steps": 5}),
    ]
    for r in written:
        folder.write_record(r)
    back = read_records(tmp_path / "run")
    kept = [r for r in written if r.kind != "phase"]  # phases are not stored; the steps carry them
    for kind in ("start", "step", "epoch", "status", "warning", "error", "end"):
        assert len(by_kind(back, kind)) == len(by_kind(kept, kind)), kind
        for a, b in zip(by_kind(kept, kind), by_kind(back, kind)):
            same_record(a, b)
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0] == ",".join(OLD_METRIC_COLUMNS)
    assert json.loads((tmp_path / "run" / "events.jsonl").read_text().splitlines()[0]) == \
        {"kind": "status", "step": 5, "state": "paused"}
    assert list(json.loads((tmp_path / "run" / "layout.json").read_text())) == OLD_LAYOUT_KEYS
    snap = snapshot_from_run(tmp_path / "run")
    assert snap.epochs[2]["train_loss"] is None and snap.epochs[0]["teacher_acc"] is None  # missing = None
    assert snap.error == "loss became nan at step 5" and snap.warnings == ["V/V0 above the budget"]


def test_an_older_folder_without_newer_columns_and_a_half_written_row_replays(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    (run / "layout.json").write_text(json.dumps({"v0": 1000, "total_steps": 10}))  # before most layout keys
    cols = OLD_METRIC_COLUMNS[:-2]  # before steps recorded their time and the barrier's budget
    rows = [",".join(["0", "prune", "1"] + ["0.5"] * (len(cols) - 5) + ["", "1"]),
            ",".join(["1", "prune", "1"] + ["0.25"] * (len(cols) - 5) + ["9.5", "0"])]
    partial = "2,prune,1,0.1"  # the CLI is mid-way through writing this row
    (run / "metrics.csv").write_text(",".join(cols) + "\n" + "\n".join(rows) + "\n" + partial)
    epoch_cols = [c for c in OLD_EPOCH_COLUMNS if c != "teacher_acc"]
    (run / "epochs.csv").write_text(",".join(epoch_cols) + "\n" + ",".join(["0", "start", "0"] + ["1"] * 8) + "\n")
    snap = snapshot_from_run(run)
    assert snap.state == "unfinished" and snap.n_steps == 2 and list(snap.steps["step"]) == [0, 1]
    assert np.isnan(snap.steps["time"]).all() and np.isnan(snap.steps["t"]).all()
    assert list(snap.steps["over_budget"]) == [True, False] and list(snap.over_budget_steps) == [0]
    assert np.isnan(snap.steps["images_per_s"][0]) and snap.steps["images_per_s"][1] == 9.5
    assert snap.epochs == [{"epoch": 0, "phase": "start", "step": 0, "test_acc": 1.0, "test_loss": 1.0,
                            "train_loss": 1.0, "teacher_acc": None, "volume": 1.0, "volume_ratio": 1.0,
                            "kept_channels": 1, "total_channels": 1, "wall_seconds": 1.0}]
    assert snap.layout == {"v0": 1000, "total_steps": 10} and snap.gates == []
    assert snap.progress["step"] == 2 and snap.progress["fraction"] == 0.2


def test_progress_is_a_dataclass_in_checkpoints_and_a_missing_field_is_refused():
    t = Trainer(tiny_config()).prepare()
    t.progress = dataclasses.replace(t.progress, step=7, phase_index=1, epoch_in_phase=1, batch_in_epoch=2,
                                     global_epoch=2, steps_over_budget=3, student_initialised=True,
                                     teacher_accuracy=0.5, wall_seconds=12.0)
    state = t.checkpoint_state([])
    assert set(state["progress"]) == PROGRESS_KEYS and state["progress"]["wall_seconds"] >= 12.0
    other = Trainer(tiny_config()).prepare()
    other.load_checkpoint_state(state)
    assert other.progress == TrainProgress(**state["progress"]) and other.step == 7 and other.teacher_accuracy == 0.5
    for broken, message in ((lambda p: p.pop("extra_steps"), "lacks 'extra_steps'"),
                            (lambda p: p.update(epochs_left=3), "has an unknown progress field 'epochs_left'")):
        bad = {**state, "progress": dict(state["progress"])}
        broken(bad["progress"])
        with pytest.raises(CheckpointError, match=rf"^run checkpoint {message}; it is not from this version$"):
            other.load_checkpoint_state(bad)
    with pytest.raises(CheckpointError, match=r"^run checkpoint lacks 'progress'; it is not from this version$"):
        other.load_checkpoint_state({k: v for k, v in state.items() if k != "progress"})
    older = {**state, "progress": {k: v for k, v in state["progress"].items() if k != "last_accuracy"}}
    other.load_checkpoint_state(older)  # written before the field existed: it takes its default
    assert other.progress.last_accuracy is None and other.step == 7


def test_progress_bar_draws_typed_records(capsys):
    bar = ProgressBar()
    bar(StartRecord(config={}, total_steps=10, resumed_at=4))
    bar(step(4))
    bar(epoch(1, {}))
    bar(step(5))
    bar(MessageRecord("warning", "careful"))
    assert bar.bar.n == 6 and bar.acc == 0.6
    bar(EndRecord("done", {}))
    out = capsys.readouterr()
    assert "warning: careful" in out.out and "6/10" in out.err and "V/V0=0.950, acc=0.600" in out.err
