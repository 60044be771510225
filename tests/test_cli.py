"""The command line: bad input gives one line, exit code 2, no traceback, and creates or changes nothing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bar_core.checkpoint import save_teacher
from bar_core.cli import main
from bar_core.models import build_model
from bar_core.runs import RunFolderError, safe_run_dir

REPO = Path(__file__).resolve().parent.parent


def cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "bar_core", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def _one_line_error(capsys_or_result, *needles):
    if isinstance(capsys_or_result, subprocess.CompletedProcess):
        err = capsys_or_result.stderr
    else:
        err = capsys_or_result.readouterr().err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("budget, needle", [("0", "budget"), ("1.5", "1.5"), ("nan", "nan"), ("-0.25", "-0.25"),
                                            ("inf", "inf")])
def test_bad_budget(tmp_path, capsys, budget, needle):
    out = tmp_path / "run"
    assert main(["train", "--budget", budget, "--out", str(out)]) == 2
    _one_line_error(capsys, needle, "budget")
    assert not out.exists()


@pytest.mark.parametrize("args, needles", [
    (["--model", "resnet9"], ["'resnet9'", "resnet8"]),
    (["--dataset", "mnist"], ["'mnist'", "fashion-mnist-subset"]),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/cifar"], ["/nonexistent/cifar"]),
    (["--schedule", "cosine"], ["'cosine'", "sigmoid"]),
    (["--gate-init", "-3"], ["gate_init"]),
    (["--teacher", "/nonexistent/t.pt"], ["/nonexistent/t.pt", "does not exist"]),
])
def test_bad_choices(tmp_path, capsys, args, needles):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *args]) == 2
    _one_line_error(capsys, *needles)
    assert not out.exists()


def test_corrupt_checkpoint_refused(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    assert main(["train", "--teacher", str(bad), "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, str(bad), "corrupt")
    assert not (tmp_path / "run").exists()


def test_mismatched_checkpoint_refused(tmp_path, capsys):
    other = tmp_path / "resnet14.pt"
    save_teacher(build_model("resnet14", 1, 10, gated=False), other, model_name="resnet14", dataset="x",
                 in_channels=1, num_classes=10, accuracy=0.5)
    assert main(["train", "--teacher", str(other), "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, "model='resnet14'", "model='resnet8'")
    # the same weights with the metadata stripped: refused by shape/key check instead
    raw = torch.load(other, weights_only=True)
    del raw["model"]
    torch.save(raw, other)
    assert main(["train", "--teacher", str(other), "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, "does not fit this model")
    assert not (tmp_path / "run").exists()


def test_out_folder_holding_a_run_is_refused_and_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "bar-run.json").write_text("{}")
    (out / "config.json").write_text(json.dumps({"model": "resnet8"}))
    (out / "metrics.csv").write_text("step\n0\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--out", str(out), "--budget", "0.5"]) == 2
    _one_line_error(capsys, "already holds a run", "--resume", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    assert main(["train", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    _one_line_error(capsys, "holds no run")


def test_subprocess_error_has_no_traceback_and_exit_code_2(tmp_path):
    r = cli("train", "--budget", "2", "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    _one_line_error(r, "budget must be in (0, 1]", "2.0")
    r = cli("train", "--budget", "abc")  # argparse's own error: usage plus one error line, exit 2
    assert r.returncode == 2 and "Traceback" not in r.stderr and "'abc'" in r.stderr


def test_help_and_lists(capsys):
    """In this process (the `bar` entry point's own process is tested above): argparse's --help exits 0."""
    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for flag in ("--budget", "--lam", "--gate-lr", "--schedule", "--teacher", "--resume", "--overwrite",
                 "--kd-temperature", "--finetune-epochs", "--threads"):
        assert flag in out
    assert main(["list-models"]) == 0
    out = capsys.readouterr().out
    assert "resnet8" in out and "wrn16_4" in out and "resnet18" in out
    assert main(["list-datasets"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist-subset" in out and "cifar10" in out


@pytest.mark.parametrize("name", ["../escape", "/etc", "a/b", "..", ".hidden", "", "x" * 101, "run\n"])
def test_run_names_cannot_escape_the_runs_folder(tmp_path, name):
    with pytest.raises(RunFolderError):
        safe_run_dir(tmp_path, name)


def test_good_run_name_stays_inside(tmp_path):
    assert safe_run_dir(tmp_path, "demo-1.b0.25").parent == tmp_path.resolve()


def test_resume_refuses_changed_settings(tmp_path, capsys):
    assert main(["train", "--resume", "--out", str(tmp_path / "r"), "--budget", "0.5", "--lam", "1e-6"]) == 2
    _one_line_error(capsys, "--budget", "--lam", "own settings")


def _write_config(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda d: {**d, "warp_drive": 1}, "unknown setting(s) warp_drive"),
    (lambda d: {k: v for k, v in d.items() if k != "lam"}, "lacks setting(s) lam"),
    (lambda d: {**d, "budget": "1/4"}, "budget must be a finite number"),
    (lambda d: {**d, "seed": 1.5}, "seed must be an integer"),
    (lambda d: [1], "must hold a JSON object of settings, got list"),
    (lambda d: None, "must hold a JSON object of settings, got NoneType"),
])
def test_config_from_another_version_or_broken_is_refused_naming_the_key(tmp_path, capsys, change, message):
    from bar_core.config import TrainConfig

    config = _write_config(tmp_path, change(TrainConfig().to_dict()))
    out = tmp_path / "run"
    assert main(["train", "--config", config, "--out", str(out)]) == 2
    _one_line_error(capsys, message)
    assert not out.exists()


def test_config_file_that_is_a_folder_or_not_text_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    for config, message in ((str(tmp_path), "is a folder"), (str(bad), "not UTF-8 text")):
        assert main(["train", "--config", config, "--out", str(tmp_path / "run")]) == 2
        _one_line_error(capsys, message)
    assert not (tmp_path / "run").exists()


TINY = ["--dataset", "synthetic", "--teacher", "none", "--pretrain-epochs", "1", "--prune-epochs", "2",
        "--finetune-epochs", "1", "--max-steps-per-epoch", "4", "--batch-size", "32", "--test-limit", "200",
        "--threads", "1", "--gate-lr", "0.2", "--lam", "5e-5", "--quiet"]


def test_config_of_a_run_reproduces_it_step_for_step(tmp_path):
    """--config RUN/config.json gives the same run: on CPU the same seed gives the same V trajectory."""
    import pandas as pd

    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["train", *TINY, "--seed", "7", "--out", str(first)]) == 0
    assert main(["train", "--config", str(first / "config.json"), "--quiet", "--out", str(again)]) == 0
    assert json.loads((again / "config.json").read_text()) == json.loads((first / "config.json").read_text())
    a, b = pd.read_csv(first / "metrics.csv"), pd.read_csv(again / "metrics.csv")
    assert len(a) > 10 and a["volume"].nunique() > 1, "V moves while pruning"
    assert a["volume"].tolist() == b["volume"].tolist()
    assert a["loss"].tolist() == b["loss"].tolist()
    s1, s2 = (json.loads((p / "summary.json").read_text()) for p in (first, again))
    assert s1["volume_ratio"] == s2["volume_ratio"] and s1["pruned_accuracy"] == s2["pruned_accuracy"]


def test_a_preset_is_the_start_and_options_override_it(tmp_path, capsys):
    """--preset smoke trains the smoke preset's settings, with the options given changing it; an
    unknown name, --preset with --config, and --preset on --resume are refused in one line."""
    from bar_core.presets import preset

    out = tmp_path / "smoke"
    assert main(["train", "--preset", "smoke", "--max-steps-per-epoch", "3", "--seed", "4", "--quiet",
                 "--out", str(out)]) == 0
    written = json.loads((out / "config.json").read_text())
    want = {**preset("smoke").config.to_dict(), "max_steps_per_epoch": 3, "seed": 4}
    assert {k: written[k] for k in want if k != "extra"} == {k: v for k, v in want.items() if k != "extra"}
    assert json.loads((out / "summary.json").read_text())["state"] == "done"
    capsys.readouterr()
    assert main(["train", "--preset", "fast", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "unknown preset 'fast'", "allowed: quick, paper, smoke")
    assert main(["train", "--resume", "--preset", "smoke", "--out", str(out)]) == 2
    _one_line_error(capsys, "drop --preset")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--preset", "smoke", "--config", str(out / "config.json"), "--out", str(tmp_path / "y")])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("budget, needles", [
    ("1e-9", ["budget 1e-09 is too small for margin m = 0.0001", "use a budget above 0.000101"]),
    ("1e-4", ["budget 0.0001 is too small", "barrier start a"]),
    ("3e-4", ["less than one channel of the smallest gated layer of resnet8 (area 49)", "at least 0.000744"]),
])
def test_budgets_that_cannot_work_are_refused_before_training(tmp_path, capsys, budget, needles):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--teacher", "none", "--budget", budget, "--out", str(out)]) == 2
    _one_line_error(capsys, *needles)
    assert not out.exists()


@pytest.mark.parametrize("args, needles", [
    (["--seed", "18446744073709551616"], ["seed must be in [0,", "18446744073709551616"]),
    (["--schedule-k", "5000"], ["schedule_k must be in (0, 1000]", "5000"]),
    (["--threads", "1000"], ["threads 1000 is more than this machine's"]),
    (["--out", ""], ["--out is empty"]),
])
def test_values_that_would_fail_later_are_refused_at_once(tmp_path, capsys, args, needles):
    argv = ["train", "--dataset", "synthetic", "--teacher", "none", *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "run").exists()


def test_out_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", "--dataset", "synthetic", "--teacher", "none", "--out", str(tmp_path / "file" / "run")]) == 2
    _one_line_error(capsys, "a file stands where a folder of its path should be")


@pytest.mark.parametrize("args, needle", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--threads", "1000"], "threads 1000 is more than"),
])
def test_pretrain_checks_its_options_before_training(tmp_path, capsys, args, needle):
    out = tmp_path / "t.pt"
    assert main(["pretrain", "--dataset", "synthetic", *args, "--out", str(out)]) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()


def test_pretrain_out_that_cannot_be_written_fails_before_the_minute_of_training(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, needle in ((tmp_path, "is a folder"), (tmp_path / "file" / "t.pt", "a file stands where")):
        assert main(["pretrain", "--dataset", "synthetic", "--out", str(out)]) == 2
        _one_line_error(capsys, needle)


def test_a_damaged_gzip_idx_file_is_a_data_error(tmp_path):
    from bar_core.data import DataError
    from bar_core.data.fashion import read_idx

    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match="damaged gzip file"):
        read_idx(bad)


def test_resume_with_a_damaged_summary_continues_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    (out / "summary.json").write_text("{broken")
    capsys.readouterr()
    assert main(["train", "--resume", "--quiet", "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["state"] == "done", "a whole outcome again"


def test_a_teacher_of_other_data_or_with_nan_weights_is_refused_before_training(tmp_path, capsys):
    import torch

    shipped = Path(__file__).resolve().parents[1] / "bar_core" / "assets" / "teachers" / "resnet8-fashion-mnist-subset.pt"
    if not shipped.is_file():
        pytest.skip("the shipped teacher is missing")
    assert main(["train", "--dataset", "synthetic", "--teacher", str(shipped), "--out", str(tmp_path / "a")]) == 2
    _one_line_error(capsys, "trained on 'fashion-mnist-subset'", "'synthetic'")
    ckpt = torch.load(shipped, weights_only=True)
    ckpt["state_dict"]["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    assert main(["train", "--teacher", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "b")]) == 2
    _one_line_error(capsys, "NaN or infinite values in 'conv1.weight'")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
