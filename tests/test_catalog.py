"""The runs table's rows (bar_core/catalog.py) over a folder holding runs of every state, a damaged
run, a sweep and a folder that is no run; and its rename and delete, which never leave the folder."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd
import pytest

from bar_core.catalog import COLUMNS, delete_run, rename_run, rows_frame, run_row, scan_runs
from bar_core.runs import RUNNING_MARKER, RunFolder, RunFolderError
from bar_core.trainer import Trainer
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real tiny run, trained to the end."""
    out = tmp_path_factory.mktemp("one") / "done"
    trainer = Trainer(tiny_config(seed=3, budget=0.5)).prepare()
    trainer.run_folder = RunFolder.create(out, trainer.config)
    seen = []
    trainer.subscribe(lambda r: seen.append((out / RUNNING_MARKER).exists()) if r.kind == "step" else None)
    trainer.run()
    assert seen and all(seen), "running.json is there while the run trains"
    assert not (out / RUNNING_MARKER).exists(), "and gone once it ended"
    return out


def _copy(src, dst, **summary_changes):
    shutil.copytree(src, dst)
    if summary_changes:
        s = json.loads((dst / "summary.json").read_text())
        s.update(summary_changes)
        (dst / "summary.json").write_text(json.dumps(s))
    return dst


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture()
def runs_root(tmp_path, finished):
    root = tmp_path / "runs"
    root.mkdir()
    _copy(finished, root / "done")
    _copy(finished, root / "stopped", state="stopped")
    _copy(finished, root / "failed", state="error", error="boom")
    live = _copy(finished, root / "live")
    (live / "summary.json").unlink()
    (live / RUNNING_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    killed = _copy(finished, root / "killed")
    (killed / "summary.json").unlink()
    (killed / RUNNING_MARKER).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    damaged = _copy(finished, root / "damaged")
    (damaged / "summary.json").write_text("{not json")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    (root / ".staging").mkdir()
    (root / ".staging" / "config.json").write_text("{}")
    sweep = root / "sweep1"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    _copy(finished, sweep / "b0.5-s0")
    return root


def test_rows_cover_every_state_and_skip_what_is_no_run(runs_root, finished):
    rows = {r.name: r for r in scan_runs(runs_root)}
    assert set(rows) == {"done", "stopped", "failed", "live", "killed", "damaged", "sweep1/b0.5-s0"}
    assert {n: r.state for n, r in rows.items()} == {
        "done": "done", "stopped": "stopped", "failed": "error", "live": "running", "killed": "unfinished",
        "damaged": "damaged", "sweep1/b0.5-s0": "done"}
    assert "summary.json is not valid JSON" in rows["damaged"].problem
    assert rows["sweep1/b0.5-s0"].sweep == "sweep1"
    summary = json.loads((finished / "summary.json").read_text())
    done = rows["done"]
    assert (done.model, done.dataset, done.method, done.schedule, done.seed) == ("resnet8", "synthetic", "bar",
                                                                                "sigmoid", 3)
    assert done.budget == 0.5 and done.pruning_factor == 2.0
    assert done.volume_ratio == summary["volume_ratio"] and done.steps == summary["steps"]
    assert done.pruned_accuracy == summary["pruned_accuracy"]
    assert done.steps_over_budget == summary["steps_over_budget"]
    assert rows["live"].volume_ratio is None, "a running run has no outcome yet"


def test_rows_frame_has_every_column_even_empty(runs_root, tmp_path):
    frame = rows_frame(scan_runs(runs_root))
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 7
    assert pd.api.types.is_float_dtype(frame["volume_ratio"])
    assert list(rows_frame(scan_runs(tmp_path / "absent")).columns) == list(COLUMNS)


def test_row_of_a_config_that_is_a_list_is_damaged(tmp_path, finished):
    run = _copy(finished, tmp_path / "r")
    (run / "config.json").write_text("[1, 2]")
    row = run_row(run)
    assert row.state == "damaged" and "config.json holds a list" in row.problem


def test_rename_moves_a_run_and_refuses_unsafe_or_taken_names(runs_root):
    assert rename_run(runs_root, "done", "renamed") == "renamed"
    assert (runs_root / "renamed" / "summary.json").is_file() and not (runs_root / "done").exists()
    with pytest.raises(RunFolderError, match="finds its runs by name"):
        rename_run(runs_root, "sweep1/b0.5-s0", "half")
    assert (runs_root / "sweep1" / "b0.5-s0").is_dir()
    before = sorted(p.name for p in runs_root.iterdir())
    for bad in ("a/b", "..", "../x", "x\ny", "", ".hidden"):
        with pytest.raises(RunFolderError, match="not allowed"):
            rename_run(runs_root, "renamed", bad)
    with pytest.raises(RunFolderError, match="already exists"):
        rename_run(runs_root, "renamed", "stopped")
    with pytest.raises(RunFolderError, match="still training"):
        rename_run(runs_root, "live", "other")
    with pytest.raises(RunFolderError, match="not a run folder"):
        rename_run(runs_root, "notes", "other")
    for outside in ("../runs/stopped", "/tmp", "sweep1/../stopped"):
        with pytest.raises(RunFolderError):
            rename_run(runs_root, outside, "other")
    assert sorted(p.name for p in runs_root.iterdir()) == before


def test_delete_removes_only_a_run_inside_the_folder(runs_root, tmp_path):
    outside = _copy(runs_root / "done", tmp_path / "outside")
    delete_run(runs_root, "done")
    assert not (runs_root / "done").exists()
    assert not [p for p in runs_root.iterdir() if p.name.startswith(".") and p.name != ".staging"]
    for name in ("../outside", str(outside), "notes", "live", "sweep1"):
        with pytest.raises(RunFolderError):
            delete_run(runs_root, name)
    assert (outside / "summary.json").is_file() and (runs_root / "notes" / "readme.txt").is_file()
    assert (runs_root / "live").is_dir()


def test_past_speed_matches_the_machine_settings_and_reads_older_configs(tmp_path, finished):
    """The speed a live run is compared with comes from a finished run with the same model, data, batch,
    threads, device and precision; a config.json from before `precision` existed ran in fp32."""
    from bar_core.catalog import past_speed

    old = _copy(finished, tmp_path / "runs" / "old")
    config = json.loads((old / "config.json").read_text())
    assert config.pop("precision") == "fp32"
    (old / "config.json").write_text(json.dumps(config))
    want = pd.read_csv(old / "metrics.csv")["images_per_s"].median()
    here = tiny_config(seed=3, budget=0.5).to_dict()
    assert past_speed(tmp_path / "runs", here) == (pytest.approx(want), "old")
    assert past_speed(tmp_path / "runs", {**here, "precision": "bf16"}) is None
    assert past_speed(tmp_path / "runs", {**here, "batch_size": 64}) is None
