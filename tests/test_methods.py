"""The `method` setting: BAR (the barrier and the moving budget), L0 (Louizos et al.: λ·L_S alone) or
magnitude (Torch-Pruning prunes the teacher once to a MAC target, then it fine-tunes), with the same
gates, data and epochs; every method writes a run folder that the app replays."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from bar_core.cli import main
from bar_core.config import ConfigError, TrainConfig
from bar_core.job import JobManager
from bar_core.losses import bar_objective, l0_objective
from tests.helpers import tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")


@pytest.fixture(scope="module")
def l0_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("methods")
    job = JobManager(root).start(tiny_config(method="l0", lam=1e-4, budget=0.25, max_steps_per_epoch=20), name="l0")
    assert job.join(120) and job.state == "done"
    return root / "l0"


@pytest.fixture(scope="module")
def magnitude_run(tmp_path_factory) -> Path:
    """The shipped teacher on the shipped subset, pruned once to half its MACs, then 2 short epochs."""
    root = tmp_path_factory.mktemp("methods")
    cfg = TrainConfig(method="magnitude", mac_ratio=0.5, prune_epochs=1, finetune_epochs=1, max_steps_per_epoch=10,
                      threads=1, test_limit=500)
    job = JobManager(root).start(cfg, name="magnitude")
    assert job.join(180) and job.state == "done", job.state
    return root / "magnitude"


def replayed_in_every_view(run: Path, runs_dir: Path) -> AppTest:
    """The app with `run` in its runs folder, after drawing every view of it without an exception; it
    is left on the Volume & budget view."""
    import shutil

    from bar_app.views.registry import LABELS
    shutil.copytree(run, runs_dir / run.name)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    for label in LABELS:
        at.session_state["view_tabs"] = label
        at.run()
        assert not at.exception, (label, at.exception)
    at.session_state["view_tabs"] = "Volume & budget"
    at.run()
    return at


def test_the_l0_objective_is_the_data_loss_plus_lambda_times_l_s():
    d, ls = torch.tensor(0.7), torch.tensor(1234.0)
    assert l0_objective(d, ls, 1e-3).item() == pytest.approx(0.7 + 1.234)
    assert l0_objective(d, ls, 1e-3).item() == bar_objective(d, ls, 1.0, 1e-3).item(), "BAR with f = 1"


def test_l0_trains_with_no_barrier_no_schedule_and_no_extra_steps(l0_run):
    m = pd.read_csv(l0_run / "metrics.csv")
    prune = m[m["phase"] == "prune"]
    lam = json.loads((l0_run / "config.json").read_text())["lam"]
    assert len(prune) == 40, "the planned prune steps only: no extra steps at a budget"
    assert prune["budget_b"].isna().all() and prune["barrier_a"].isna().all(), "no budget, no barrier"
    assert (prune["barrier_f"] == 1.0).all() and not prune["over_budget"].any()
    # the loss each step trained on is L_D + λ·L_S, to float32 precision
    assert ((prune["loss"] - (prune["loss_data"] + lam * prune["loss_sparsity"])).abs()
            <= 1e-5 * prune["loss"].abs()).all()
    assert prune["volume"].iloc[-1] < prune["volume"].iloc[0], "λ·L_S alone prunes"
    summary = json.loads((l0_run / "summary.json").read_text())
    assert summary["method"] == "l0" and summary["budget"] is None and summary["budget_met"] is None
    assert summary["pruning_factor"] == pytest.approx(1 / summary["volume_ratio"])
    assert not [h for h in summary["health"] if "budget" in h], "no budget to be judged against"


def test_an_l0_run_replays_in_every_view_with_no_budget_wall(l0_run, runs_dir):
    at = replayed_in_every_view(l0_run, runs_dir)
    fig = json.loads(next(c for c in at.get("plotly_chart") if c.key == "chart_volume").proto.spec)
    assert not [s for s in fig["layout"].get("shapes", []) if s.get("xref") == "x domain"], "no a or B level"
    at.session_state["view_tabs"] = "Barrier"
    at.run()
    assert any("no barrier" in i.value for i in at.info)
    assert any(m.label == "Budget" and m.value == "none" and m.delta.startswith("L0: ") for m in at.metric)
    st.cache_resource.clear()


def test_magnitude_prunes_once_to_the_mac_target_then_fine_tunes_every_epoch(magnitude_run):
    summary = json.loads((magnitude_run / "summary.json").read_text())
    assert summary["method"] == "magnitude" and summary["budget"] is None and summary["budget_met"] is None
    assert summary["mac_ratio"] == pytest.approx(0.5, rel=0.02) and summary["target_mac_ratio"] == 0.5
    assert summary["kept_channels"] < summary["total_channels"]
    m = pd.read_csv(magnitude_run / "metrics.csv")
    assert list(m["step"]) == list(range(20)), "prune + fine-tune epochs, every step once"
    assert (m["phase"] == "finetune").all(), "no gradual pruning: the architecture is fixed from step 0"
    assert m["volume"].nunique() == 1 and m["volume_ratio"].iloc[0] == pytest.approx(summary["volume_ratio"])
    assert m["budget_b"].isna().all() and (m["barrier_f"] == 0).all() and not m["over_budget"].any()
    epochs = pd.read_csv(magnitude_run / "epochs.csv")
    # the start row is the network right after one-shot pruning, before any fine-tuning
    assert list(epochs["phase"]) == ["start", "finetune", "finetune"]
    assert epochs["test_acc"].iloc[-1] > epochs["test_acc"].iloc[0]
    events = [json.loads(line) for line in (magnitude_run / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "info" and "Torch-Pruning removed" in e["message"] for e in events)


def test_a_magnitude_runs_gates_are_the_channels_torch_pruning_removed(magnitude_run):
    """The gated student computes what Torch-Pruning's narrower network computes."""
    from bar_core.checkpoint import default_teacher_path, load_teacher
    from bar_core.magnitude import close_removed_gates, prune_to_macs
    from bar_core.models import build_model
    teacher = build_model("resnet8", 1, 10, gated=False)
    teacher.load_state_dict(load_teacher(default_teacher_path("resnet8", "fashion-mnist-subset"), "resnet8", 1,
                                         10)["state_dict"])
    net, report = prune_to_macs(teacher.eval(), (1, 28, 28), 0.5, tolerance=0.02)
    gated = build_model("resnet8", 1, 10)
    gated.load_state_dict(teacher.state_dict(), strict=False)
    assert close_removed_gates(gated, report.removed) == report.removed_channels > 0
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(gated.eval()(x), net(x), atol=1e-4)
    # and the run closed exactly those gates, at every epoch: its gates.npz
    import numpy as np
    with np.load(magnitude_run / "gates.npz") as z:
        for k, layer in enumerate(z["layers"]):
            closed = z[f"test_gate_{k}"] == 0  # (epochs, channels)
            want = np.zeros(closed.shape[1], bool)
            want[list(report.removed.get(str(layer), ()))] = True
            assert (closed == want).all(), layer


def test_a_magnitude_run_replays_and_its_pruned_network_reloads(magnitude_run, runs_dir, tmp_path):
    from bar_core.checkpoint import load_file
    from bar_core.export import load_pruned, save_pruned
    from bar_core.materialize import materialize
    from bar_core.models import build_model
    from bar_core.report import load_snapshot
    at = replayed_in_every_view(magnitude_run, runs_dir)
    assert any(m.label == "Budget" and m.value == "none" and m.delta.startswith("magnitude: ") for m in at.metric)
    assert any("Torch\\-Pruning removed" in i.value for i in at.info), "the one-shot pruning note, as text"
    st.cache_resource.clear()
    student = build_model("resnet8", 1, 10)
    student.load_state_dict(load_file(magnitude_run / "checkpoint.pt", "run checkpoint")["student"])
    pruned = materialize(student)
    save_pruned(pruned, tmp_path / "net")
    again = load_pruned(tmp_path / "net")
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(again(x), student.eval()(x), atol=1e-4)
    assert load_snapshot(magnitude_run).summary["mac_ratio"] == pytest.approx(0.5, rel=0.02)


def test_bad_methods_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="method 'slimming'"):
        TrainConfig(method="slimming").validate()
    assert main(["sweep", "--method", "l0", "--budgets", "1/2,1/4", "--dataset", "synthetic", "--teacher", "none",
                 "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert "a budget sweep needs method 'bar'" in err and not (tmp_path / "sw").exists()
    for args, needle in ((["--method", "magnitude", "--schedule", "exp", "--barrier-cap", "1000"],
                          "method 'magnitude' ignores schedule 'exp', barrier_cap 1000.0: only bar uses them"),
                         (["--method", "l0", "--budget", "1/8"], "method 'l0' does not enforce a budget (budget 0.125)"),
                         (["--method", "magnitude", "--mac-ratio", "0"], "mac_ratio must be in (0, 1]")):
        out = tmp_path / "run"
        assert main(["train", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err, err
        assert not out.exists()


def test_a_config_json_from_before_the_method_setting_trains_bar():
    data = TrainConfig().to_dict()
    data.pop("method")
    assert TrainConfig.from_file_dict(data).method == "bar"
    assert not math.isnan(TrainConfig.from_file_dict(data).lam)


def test_the_methods_table_and_its_figures_come_from_the_run_folders(l0_run, magnitude_run):
    from bar_core.results import COLUMNS, accuracy_figure, lambda_figure, row_from_summary

    rows = [row_from_summary(json.loads((p / "summary.json").read_text()), json.loads((p / "config.json").read_text()),
                             p.name) for p in (l0_run, magnitude_run)]
    assert all(set(r) == set(COLUMNS) for r in rows)
    l0, mag = rows
    assert (l0["method"], l0["budget"], l0["lam"]) == ("l0", None, 1e-4)
    assert (mag["method"], mag["lam"], mag["target_mac_ratio"]) == ("magnitude", None, 0.5)
    assert mag["mac_factor"] == pytest.approx(1 / mag["mac_ratio"]) and mag["epochs"] == 2
    fig = accuracy_figure(rows, "macs")
    assert [t.name for t in fig.data] == ["L0", "magnitude"] and fig.layout.xaxis.type == "log"
    assert fig.data[1].y[0] == pytest.approx(100 * mag["accuracy"])
    teacher_line = [s for s in accuracy_figure([mag], "volume").layout.shapes if s.line.dash == "dash"]
    assert len(teacher_line) == 1 and teacher_line[0].y0 == pytest.approx(100 * mag["teacher_accuracy"])
    lam = lambda_figure(rows, 0.125)
    assert [t.name for t in lam.data] == ["L0"] and list(lam.data[0].x) == [1e-4], "magnitude has no λ"


def test_the_barrier_note_draws_the_measured_lambda_table(l0_run, magnitude_run, runs_dir, tmp_path, monkeypatch):
    """The Barrier view's teaching note draws the λ table shipped with the package (here, one made of
    this module's runs in its place)."""
    import csv

    from bar_core import results
    rows = [results.row_from_summary(json.loads((p / "summary.json").read_text()),
                                     json.loads((p / "config.json").read_text()), p.name) for p in (l0_run, magnitude_run)]
    with open(tmp_path / "lambda.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=results.COLUMNS)
        w.writeheader()
        w.writerows({k: "" if r[k] is None else r[k] for k in results.COLUMNS} for r in rows)
    monkeypatch.setattr(results, "SHIPPED", tmp_path)
    assert results.shipped_rows("lambda")[0]["lam"] == 1e-4 and results.shipped_rows("lambda")[1]["lam"] is None
    at = replayed_in_every_view(l0_run, runs_dir)
    at.session_state["view_tabs"] = "Barrier"
    at.run()
    fig = json.loads(next(c for c in at.get("plotly_chart") if c.key == "chart_lambda_evidence").proto.spec)
    assert [t["name"] for t in fig["data"]] == ["L0"] and fig["data"][0]["x"] == [1e-4]
    st.cache_resource.clear()


def test_the_accuracy_figure_draws_the_mean_over_seeds_and_each_seed_as_a_dot():
    from bar_core.results import accuracy_figure, methods_markdown

    def row(seed, budget, factor, acc):
        return {"method": "bar", "seed": seed, "budget": budget, "lam": 2e-6, "volume_factor": factor,
                "accuracy": acc, "run": f"bar-b{round(1 / budget)}-s{seed}"}

    rows = [row(0, 0.125, 8.0, 0.88), row(1, 0.125, 8.4, 0.90), row(0, 0.0625, 16.0, 0.80)]
    line, dots = accuracy_figure(rows, "volume").data
    assert line.name == "BAR (mean over seeds)" and list(line.x) == pytest.approx([8.2, 16.0])
    assert list(line.y) == pytest.approx([89.0, 80.0])
    assert sorted(dots.y) == pytest.approx([80.0, 88.0, 90.0]) and dots.mode == "markers"
    assert [t.name for t in accuracy_figure(rows[:1], "volume").data] == ["BAR"], "one seed: no dots"
    table = methods_markdown(rows).splitlines()
    assert table[0].startswith("| method | B | λ | seed |") and "| 1/8 | 2e-06 | 1 |" in "\n".join(table)
