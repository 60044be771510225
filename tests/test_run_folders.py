"""Run folders and checkpoints: atomic writes, refusing to clobber, reading back without the library."""
import json
import os
import pickle
import stat

import numpy as np
import pytest
import torch

from bar_core.checkpoint import CheckpointError, load_file, save_atomic
from bar_core.config import TrainConfig
from bar_core.runs import RunFolder, RunFolderError, list_runs


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"step": torch.tensor(1)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # which one depends on where the lambda lives
        save_atomic({"step": torch.tensor(2), "bad": lambda: 0}, path)  # lambdas cannot be pickled
    assert int(load_file(path)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"], "no temporary file left behind"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()


def _umask():
    u = os.umask(0)
    os.umask(u)
    return u


def test_truncated_checkpoint_is_refused_clearly(tmp_path):
    path = tmp_path / "c.pt"
    save_atomic({"w": torch.randn(100)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_file(path)


def test_create_refuses_runs_and_strangers_and_overwrite_replaces_whole(tmp_path):
    cfg = TrainConfig()
    run = RunFolder.create(tmp_path / "r", cfg)
    (run.path / "metrics.csv").write_text("step\n0\n")
    with pytest.raises(RunFolderError, match="already holds a run"):
        RunFolder.create(tmp_path / "r", cfg)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="holds no run"):
        RunFolder.create(other, cfg, overwrite=True)
    assert (other / "todo.txt").read_text() == "mine"
    RunFolder.create(tmp_path / "r", cfg.replace(budget=0.5), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["bar-run.json", "config.json"]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["budget"] == 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging or old folders left"
    assert [p.name for p in list_runs(tmp_path)] == ["r"]


def test_a_folder_holding_a_config_json_is_no_run_and_overwrite_never_deletes_foreign_files(tmp_path, capsys):
    """A folder is a run by the marker a run writes first; overwrite replaces only a run's own files."""
    from bar_core.cli import main
    from bar_core.runs import holds_run

    p = tmp_path / "p"
    (p / "src").mkdir(parents=True)
    (p / "config.json").write_text("{}")
    (p / "notes.txt").write_text("n")
    (p / "metrics.csv").write_text("step\n")
    assert not holds_run(p)
    assert main(["train", "--out", str(p), "--overwrite", "--prune-epochs", "1", "--finetune-epochs", "0",
                 "--max-steps-per-epoch", "2"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert sorted(x.name for x in p.iterdir()) == ["config.json", "metrics.csv", "notes.txt", "src"]
    run = RunFolder.create(tmp_path / "r", TrainConfig())
    assert holds_run(run.path)
    (run.path / "notes.txt").write_text("mine")
    (run.path / ".checkpoint.pt.x1.tmp").write_text("")  # an atomic write cut short is the run's own
    with pytest.raises(RunFolderError, match=r"files no run wrote \(notes.txt\)"):
        RunFolder.create(run.path, TrainConfig(), overwrite=True)
    assert (run.path / "notes.txt").read_text() == "mine"
    (run.path / "notes.txt").unlink()
    RunFolder.create(run.path, TrainConfig(), overwrite=True)
    assert sorted(x.name for x in run.path.iterdir()) == ["bar-run.json", "config.json"]


def test_a_run_folder_written_before_the_marker_is_still_a_run(tmp_path):
    from bar_core.runs import holds_run

    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    assert not holds_run(old), "a config.json alone is no run"
    (old / "metrics.csv").write_text("step\n")
    assert holds_run(old)


def test_gates_npz_reads_with_numpy_alone(tmp_path):
    from bar_core.runs import _save_snapshots
    snaps = [(e, {"bn1": {"log_alpha": np.full(4, e, np.float32), "prob_open": np.zeros(4, np.float32),
                          "test_gate": np.ones(4, np.float32)}}) for e in (0, 1, 2)]
    _save_snapshots(tmp_path / "gates.npz", snaps)
    z = np.load(tmp_path / "gates.npz", allow_pickle=False)
    assert list(z["epochs"]) == [0, 1, 2] and list(z["layers"]) == ["bn1"]
    assert z["log_alpha_0"].shape == (3, 4) and z["log_alpha_0"][2, 0] == 2
