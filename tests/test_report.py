"""`bar report` (bar_core/report.py) on real tiny runs and a two-run sweep: every figure as PNG and HTML,
the tables as CSV, an index.html that shows them and escapes what the run wrote; bad input refused
with one line, exit 2 and nothing written; and the accuracy-versus-pruning-factor figure."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bar_core import cli, export_files, figures, report
from bar_core.history import snapshot_from_run
from bar_core.runs import RUN_MARKER, RunFolder
from bar_core.trainer import Trainer
from tests.helpers import tiny_config

UNSAFE = "<b>x</b> & <script>alert(1)</script>"
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.I)


def _train(out, **changes):
    trainer = Trainer(tiny_config(**changes)).prepare()
    trainer.run_folder = RunFolder.create(out, trainer.config)
    trainer.run()
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep folder made by hand: sweep.json and two real runs (B = 1/2 and 1/4); the second's
    summary carries an error message holding HTML."""
    root = tmp_path_factory.mktemp("report") / "sweep1"
    root.mkdir()
    (root / "sweep.json").write_text(json.dumps({"budgets": [0.5, 0.25], "seeds": [0], "note": UNSAFE}))
    _train(root / "b0.5-s0", budget=0.5, seed=0)
    _train(root / "b0.25-s0", budget=0.25, seed=0)
    path = root / "b0.25-s0" / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "error": UNSAFE}))
    return root


def listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def check_report(out, snap=None, scale=report.PNG_SCALE) -> dict:
    """index.html lists every figure of report.json, whose PNG (decoded), HTML and CSV files exist."""
    page = (out / "index.html").read_text()
    meta = json.loads((out / "report.json").read_text())
    assert report.MARKER in page and meta["generator"] == report.GENERATOR
    assert meta["figures"], "figures were written"
    for fig in meta["figures"]:
        assert f'src="{fig["png"]}"' in page and f'href="{fig["html"]}"' in page and f'href="{fig["csv"]}"' in page
        img = Image.open(out / fig["png"])
        assert img.size == (fig["width"] * scale, fig["height"] * scale), fig["name"]
        assert len(np.unique(np.asarray(img.convert("L")))) > 10, f"{fig['name']} has real pixels"
        interactive = (out / fig["html"]).read_text()
        assert '<script charset="utf-8" src="../' in interactive and not REMOTE_SCRIPT.search(interactive)
        assert (out / fig["csv"]).stat().st_size > 0
    assert not REMOTE_SCRIPT.search(page) and "http://" not in page and "https://" not in page
    assert UNSAFE not in page and "<b>x</b>" not in page and "<script>alert" not in page
    if snap is not None:
        assert [f["name"] for f in meta["figures"]] == [f.name for f in figures.run_figures(snap)]
        for name, table in figures.run_tables(snap).items():
            back = pd.read_csv(out / "tables" / f"{name}.csv")
            pd.testing.assert_frame_equal(back, table, check_dtype=False, obj=name)
    return meta


def test_report_of_a_run_from_the_command_line(sweep, tmp_path, capsys, browser):
    run = sweep / "b0.25-s0"
    out = tmp_path / "reports" / "r1"
    assert cli.main(["report", str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report written: {out / 'index.html'}"
    snap = snapshot_from_run(run)
    meta = check_report(out, snap)
    assert meta["kind"] == "run" and (out / "plotly.min.js").stat().st_size > 3_000_000
    page = (out / "index.html").read_text()
    assert "Error: &lt;b&gt;x&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in page, "the error, escaped"
    for layer in snap.layout["layers"]:
        assert f'src="figures/heatmap_{layer["name"]}.png"' in page
    assert "<h2 id=\"settings\">" in page and "resnet8" in page
    # the volume data behind the figure
    data = pd.read_csv(out / "data" / "volume.csv")
    np.testing.assert_allclose(data[data["trace"] == "V / V0 (volume kept)"]["y"], snap.steps["volume"] / snap.v0)
    assert listing(tmp_path / "reports") == ["r1", *(f"r1/{p}" for p in listing(out))], "no temporary folder left"


def test_report_of_a_sweep_links_a_report_per_run(sweep, tmp_path, browser):
    out = tmp_path / "sweep-report"
    index = report.write_report(sweep, out, scale=1, heatmaps=False)
    assert index == out / "index.html"
    meta = check_report(out, scale=1)
    assert meta["kind"] == "sweep" and [f["name"] for f in meta["figures"]] == ["pareto"]
    page = index.read_text()
    runs = {r["name"]: r for r in meta["runs"]}
    assert set(runs) == {"b0.5-s0", "b0.25-s0"}
    for name, entry in runs.items():
        assert entry["report"] == f"runs/{name}/index.html" and f'href="runs/{name}/index.html"' in page
        sub = check_report(out / "runs" / name, scale=1)
        assert all(not f["name"].startswith("heatmap_") for f in sub["figures"])
        assert '<a href="../../index.html">' in (out / "runs" / name / "index.html").read_text()
    assert "&lt;b&gt;x&lt;/b&gt;" in page, "the run's error and sweep.json's text appear escaped"
    table = pd.read_csv(out / "tables" / "runs.csv")
    assert list(table["name"]) == ["b0.5-s0", "b0.25-s0"], "by pruning factor"
    assert list(table["pruning_factor"]) == [2.0, 4.0] and "path" not in table
    assert table["error"].iloc[1] == UNSAFE and pd.isna(table["error"].iloc[0])
    points = pd.read_csv(out / "data" / "pareto.csv")
    assert sorted(points[points["trace"] == "run"]["x"]) == [2.0, 4.0]
    # a later report replaces this one in place
    stale = out / "stale.txt"
    stale.write_text("from before")
    report.write_report(sweep / "b0.5-s0", out, scale=1, heatmaps=False)
    assert not stale.exists() and json.loads((out / "report.json").read_text())["kind"] == "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep-report"], "nothing left beside it"


def _bad_inputs(root, sweep):
    (root / "file.txt").write_text("not a folder")
    (root / "empty").mkdir()
    (root / "busy").mkdir()
    (root / "busy" / "notes.txt").write_text("someone's files")
    (root / "no-runs").mkdir()
    (root / "no-runs" / "sweep.json").write_text("{}")
    (root / "damaged").mkdir()
    (root / "damaged" / RUN_MARKER).write_text("{}")
    (root / "damaged" / "config.json").write_text("{not json")
    (root / "damaged" / "metrics.csv").write_text("step\n")
    run = str(sweep / "b0.5-s0")
    return {
        "missing path": ([str(root / "nothing"), "--out", str(root / "o")], "does not exist"),
        "a file": ([str(root / "file.txt"), "--out", str(root / "o")], "is a file"),
        "no run, no sweep": ([str(root / "empty"), "--out", str(root / "o")], "neither a run folder"),
        "sweep without runs": ([str(root / "no-runs"), "--out", str(root / "o")], "holds no run folders"),
        "damaged run": ([str(root / "damaged"), "--out", str(root / "o")], "cannot read run folder"),
        "--out is a file": ([run, "--out", str(root / "file.txt")], "is a file; give a folder"),
        "--out holds other files": ([run, "--out", str(root / "busy")], "not empty and holds no earlier report"),
        "--out under a file": ([run, "--out", str(root / "file.txt" / "o")], "is a file"),
    }


def test_bad_input_is_one_line_exit_2_and_nothing_written(sweep, tmp_path, capsys, monkeypatch):
    root = tmp_path / "bad"
    root.mkdir()
    cases = _bad_inputs(root, sweep)
    before, sweep_before = listing(root), listing(sweep)
    for case, (args, message) in cases.items():
        assert cli.main(["report", *args]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (case, err)
        assert listing(root) == before and listing(sweep) == sweep_before, case
    # no browser: one line naming the package, before anything is written
    monkeypatch.setattr(export_files, "CHROMIUM_PATHS", ("/nonexistent/chromium",))
    monkeypatch.setattr(export_files, "CHROMIUM_NAMES", ())
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    assert cli.main(["report", str(sweep / "b0.5-s0"), "--out", str(root / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: PNG export needs Chromium") and "apt install chromium" in err and err.count("\n") == 1
    assert listing(root) == before


def test_pareto_figure_marks_the_front_and_the_teacher():
    rows = [{"name": "a", "pruning_factor": 2.0, "pruned_accuracy": 0.90},
            {"name": "b", "pruning_factor": 4.0, "pruned_accuracy": 0.85},
            {"name": "c", "pruning_factor": 4.0, "pruned_accuracy": 0.80},        # beaten by b
            {"name": "<i>d</i>", "volume_ratio": 0.125, "pruned_accuracy": 0.70},  # factor 8 from V/V0
            {"name": "e", "pruning_factor": 16.0, "pruned_accuracy": None}]       # no accuracy yet
    fig = figures.pareto_figure(rows, teacher_accuracy=0.92)
    export_files.validated(fig)
    points, front = fig.data
    assert list(points.x) == [2.0, 4.0, 4.0, 8.0] and list(points.y) == [0.90, 0.85, 0.80, 0.70]
    assert list(front.x) == [2.0, 4.0, 8.0] and list(front.y) == [0.90, 0.85, 0.70]
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [2.0, 4.0, 8.0]
    assert list(fig.layout.xaxis.ticktext) == ["2×", "4×", "8×"]
    teacher = [s for s in fig.layout.shapes if s.y0 == 0.92]
    assert teacher and teacher[0].line.dash == "dash"
    assert "&lt;i&gt;d&lt;/i&gt;" in [c[0] for c in points.customdata], "names go in escaped"
    assert any("1 run(s) without an accuracy" in a.text for a in fig.layout.annotations)
    assert figures.pareto_front([1, 2, 2, 3, 3], [0.7, 0.6, 0.4, 0.5, 0.5]).tolist() == [True, True, False, True, True]
    empty = figures.pareto_figure([], None)
    assert len(empty.data) == 1 and len(empty.data[0].x) == 0


def test_report_index_escapes_every_user_text(sweep, tmp_path):
    """index.html builders, without a browser: names, paths, settings and messages are escaped."""
    snap = snapshot_from_run(sweep / "b0.25-s0")
    snap.config["data_root"] = "<img src=x onerror=alert(1)>"
    snap.events.append({"kind": "warning", "message": "<u>w</u>"})
    page = report.run_index(snap, "<b>name</b>", tmp_path / "<q>dir</q>", [], figures.run_tables(snap),
                            back=('x" onclick="y', "<s>up</s>"))
    for raw in ("<b>name</b>", "<img src=x", "<u>w</u>", "<q>dir</q>", "<s>up</s>", 'x" onclick'):
        assert raw not in page, raw
    assert "&lt;b&gt;name&lt;/b&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
