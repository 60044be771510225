"""TensorBoard event files (setting `tensorboard`): real tiny runs read back with TensorBoard's own
EventAccumulator and compared with the run folder's CSVs; a resumed run shows every step once; without
the tensorboard package a run is refused before anything is created."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bar_core.cli import main
from bar_core.config import ConfigError
from bar_core.runs import RunFolder
from bar_core.tensorboard import MISSING, run_name
from bar_core.trainer import Trainer
from tests.helpers import tiny_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parent.parent
# `bar train` options for tests/helpers.py's tiny_config
TINY_ARGS = ["--dataset", "synthetic", "--teacher", "none", "--pretrain-epochs", "1", "--prune-epochs", "2",
             "--finetune-epochs", "1", "--max-steps-per-epoch", "5", "--batch-size", "32", "--test-limit", "200",
             "--threads", "1", "--gate-lr", "0.2", "--lam", "5e-5", "--extra-prune-steps", "20", "--quiet"]


def read_events(log_dir: Path) -> EventAccumulator:
    return EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0}).Reload()


def series(acc: EventAccumulator, tag: str) -> tuple[list[int], np.ndarray]:
    events = acc.Scalars(tag)
    return [e.step for e in events], np.array([e.value for e in events])


def assert_matches_run_folder(acc: EventAccumulator, run: Path) -> None:
    """The event files say what metrics.csv and epochs.csv say: every step once, the same values."""
    metrics, epochs = pd.read_csv(run / "metrics.csv"), pd.read_csv(run / "epochs.csv")
    assert list(metrics["step"]) == list(range(len(metrics)))
    for tag, column in (("budget/volume", "volume"), ("train/loss", "loss"), ("budget/volume_ratio", "volume_ratio")):
        steps, values = series(acc, tag)
        assert steps == list(metrics["step"]), f"{tag}: one value per training step"
        np.testing.assert_allclose(values, metrics[column], rtol=1e-6, err_msg=tag)  # event files hold float32
    prune = metrics[metrics["phase"] == "prune"]
    steps, b = series(acc, "budget/budget_b")
    assert steps == list(prune["step"]), "b only while pruning"
    np.testing.assert_allclose(b, prune["budget_b"], rtol=1e-6)
    steps, accuracy = series(acc, "epoch/test_acc")
    assert steps == [max(s - 1, 0) for s in epochs["step"]], "an epoch at its last step"
    np.testing.assert_allclose(accuracy, epochs["test_acc"], rtol=1e-6)
    np.testing.assert_allclose(series(acc, "epoch/kept_channels")[1], epochs["kept_channels"])
    layers = [layer["name"] for layer in json.loads((run / "layout.json").read_text())["layers"]]
    assert sorted(acc.Tags()["histograms"]) == sorted(f"gates/{name}" for name in layers)
    for name in layers:
        hist = acc.Histograms(f"gates/{name}")
        assert [h.step for h in hist] == steps, name
        channels = next(layer["channels"] for layer in json.loads((run / "layout.json").read_text())["layers"]
                        if layer["name"] == name)
        assert all(h.histogram_value.num == channels for h in hist), name


def test_a_run_writes_what_its_folder_holds(tmp_path):
    cfg = tiny_config(tensorboard=str(tmp_path / "tb"))
    trainer = Trainer(cfg).prepare()
    trainer.run_folder = RunFolder.create(tmp_path / "run", cfg)
    assert trainer.run()["state"] == "done"
    acc = read_events(tmp_path / "tb" / "run")
    assert_matches_run_folder(acc, tmp_path / "run")
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text) == json.loads((tmp_path / "run" / "config.json").read_text()), "config.json, verbatim"
    assert all(line.startswith("    ") for line in text.splitlines()), "a Markdown code block: shown as typed"
    assert acc.SummaryMetadata("_hparams_/experiment").plugin_data.plugin_name == "hparams"


def test_cli_option_puts_each_run_in_its_own_subfolder(tmp_path):
    tb = tmp_path / "tb"
    for name, budget in (("a", "0.5"), ("b", "0.25")):
        assert main(["train", "--out", str(tmp_path / name), "--budget", budget, "--tensorboard", str(tb),
                     *TINY_ARGS]) == 0
    assert sorted(p.name for p in tb.iterdir()) == ["a", "b"], "tensorboard --logdir tb shows two runs"
    for name in ("a", "b"):
        assert_matches_run_folder(read_events(tb / name), tmp_path / name)


def test_a_resumed_run_shows_every_step_once(tmp_path):
    """The first session trains past its last checkpoint, as a killed process does; the resumed one
    continues from that checkpoint, and TensorBoard hides the first session's later steps."""
    tb, run = tmp_path / "tb", tmp_path / "run"
    cfg = tiny_config(tensorboard=str(tb))
    trainer = Trainer(cfg).prepare()
    trainer.run_folder = RunFolder.create(run, cfg)
    saved = tmp_path / "after-epoch-2.pt"

    def crash_later(r):
        if r.kind == "step" and r.step == 10:  # epoch 2 (5 steps each) is done and checkpointed
            shutil.copy(run / "checkpoint.pt", saved)
        elif r.kind == "step" and r.step == 13:
            trainer.stop()
    trainer.subscribe(crash_later)
    assert trainer.run()["state"] == "stopped"
    shutil.copy(saved, run / "checkpoint.pt")  # steps 10..13 were written after it
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0
    assert len(list((tb / "run").glob("events.out.tfevents.*"))) == 2, "one event file per session"
    assert_matches_run_folder(read_events(tb / "run"), run)


def test_without_tensorboard_the_cli_refuses_with_one_line_and_creates_nothing(tmp_path):
    out, tb = tmp_path / "run", tmp_path / "tb"
    code = ("import sys; sys.modules['tensorboard'] = None; sys.modules['torch.utils.tensorboard'] = None; "
            "from bar_core.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "train", "--out", str(out), "--tensorboard", str(tb),
                             *TINY_ARGS], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {MISSING}"
    assert not out.exists() and not tb.exists()


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / "tb").write_text("")
    with pytest.raises(ConfigError, match=r"^tensorboard must be a folder, got '.*tb' \(a file\)$"):
        Trainer(tiny_config(tensorboard=str(tmp_path / "tb"))).prepare()


def test_runs_inside_a_sweep_are_named_with_their_sweep(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "sweep.json").write_text("{}")
    assert run_name(RunFolder(tmp_path / "s1" / "b0.5-s0")) == "s1/b0.5-s0"
    assert run_name(RunFolder(tmp_path / "demo")) == "demo"
