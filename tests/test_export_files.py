"""Files out (bar_core/export_files.py, bar_core/figures.py, bar_app/downloads.py) from a real tiny run:
PNG with real pixels at the asked size, offline HTML holding the figure's data, CSV that reads back
equal, a run zip that replays to the same snapshot, and the app's download menus."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from bar_core import export_files, figures
from bar_core.export_files import FigureExportError, PngRenderer
from bar_core.history import snapshot_from_run
from bar_core.runs import RUNNING_MARKER, RunFolder
from bar_core.trainer import Trainer
from tests.helpers import tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.I)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    trainer = Trainer(tiny_config(seed=1)).prepare()
    trainer.run_folder = RunFolder.create(out, trainer.config)
    trainer.run()
    return out


@pytest.fixture(scope="module")
def snap(run_dir):
    return snapshot_from_run(run_dir)


def decoded_arrays(page: str) -> list[np.ndarray]:
    """Every float64 typed array (plotly's {"dtype": "f8", "bdata": ...}) in an HTML page (whose JSON
    writes '/' as \\u002f)."""
    found = re.findall(r'"dtype":"f8","bdata":"([^"]+)"', page)
    return [np.frombuffer(base64.b64decode(json.loads(f'"{b}"')), dtype="<f8") for b in found]


def test_run_figures_are_every_view_that_the_folder_can_draw(snap):
    named = figures.run_figures(snap)
    names = [f.name for f in named]
    layers = [l["name"] for l in snap.layout["layers"]]
    assert names[:4] == ["volume", "schedule", "barrier", "gate_histograms"]
    assert names[-3:] == ["hard_concrete", "kept_channels", "training"]
    assert [n for n in names if n.startswith("heatmap_")] == [f"heatmap_{l}" for l in layers]
    assert len(set(names)) == len(names)
    for f in named:
        export_files.validated(f.figure)  # plotly accepts every property
    assert "end of pruning" in named[2].title
    assert [f.name for f in figures.run_figures(snap, heatmaps=False)] == [n for n in names if not n.startswith("heatmap_")]


def test_png_has_the_asked_size_and_real_pixels(snap, browser):
    fig = figures.volume(snap)
    for width, height, scale in ((640, 360, 1), (500, 300, 2)):
        png = export_files.png_bytes(fig, width=width, height=height, scale=scale)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        img = Image.open(io.BytesIO(png)).convert("RGB")
        assert img.size == (width * scale, height * scale)
        pixels = np.asarray(img)
        colours = np.unique(pixels.reshape(-1, 3), axis=0)
        assert len(colours) > 50, "lines, text and shading, not a flat image"
        assert (pixels == 255).all(axis=2).mean() > 0.3, "a white page with the chart on it"
    # default size: PNG_WIDTH and the figure's own layout height
    img = Image.open(io.BytesIO(export_files.png_bytes(figures.training(snap))))
    assert img.size == (export_files.PNG_WIDTH, 620)


def test_png_without_chromium_is_one_line_naming_the_package(snap, monkeypatch):
    monkeypatch.setattr(export_files, "CHROMIUM_PATHS", ("/nonexistent/chromium",))
    monkeypatch.setattr(export_files, "CHROMIUM_NAMES", ())
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    assert export_files.find_chromium() is None
    with pytest.raises(FigureExportError) as err:
        PngRenderer().png(figures.volume(snap))
    msg = str(err.value)
    assert "apt install chromium" in msg and "\n" not in msg and err.value.missing_browser
    monkeypatch.setenv("BROWSER_PATH", "/nowhere/chrome")
    with pytest.raises(FigureExportError, match=r"BROWSER_PATH='/nowhere/chrome' is not an executable"):
        PngRenderer().png(figures.volume(snap))
    with pytest.raises(ValueError, match="scale"):
        export_files.png_bytes(figures.volume(snap), scale=0)


def test_html_is_standalone_offline_and_holds_the_data(snap):
    fig = figures.volume(snap)
    page = export_files.html_text(fig, title="<b>x</b> run")
    assert not REMOTE_SCRIPT.search(page), "no script from the network"
    assert "plotly.js v" in page and len(page) > 3_000_000, "plotly.js itself is inside"
    assert "<title>&lt;b&gt;x&lt;/b&gt; run</title>" in page
    expected = snap.steps["volume"] / snap.v0
    assert any(len(a) == len(expected) and np.allclose(a, expected) for a in decoded_arrays(page)), \
        "the V/V0 values are in the page"
    assert "sendDataToCloud" in page, "the upload button is removed from the modebar"
    shared = export_files.html_text(fig, plotlyjs="../plotly.min.js")
    assert '<script charset="utf-8" src="../plotly.min.js"></script>' in shared and len(shared) < 200_000
    for remote in ("https://cdn.plot.ly/plotly.js", "//cdn.example/p.js", "http:plotly.js"):
        with pytest.raises(ValueError, match="relative path"):
            export_files.html_text(fig, plotlyjs=remote)


def test_tables_and_figure_data_read_back_equal_as_csv(snap, tmp_path):
    for name, table in figures.run_tables(snap).items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(export_files.csv_bytes(table))
        back = pd.read_csv(path)
        assert len(back) == len(table) > 0, name
        pd.testing.assert_frame_equal(back, table, check_dtype=False, obj=name)
    layers = figures.run_tables(snap)["layers"]
    assert list(layers["layer"]) == [l["name"] for l in snap.layout["layers"]]
    assert (layers["kept"] <= layers["total"]).all()
    data = export_files.figure_table(figures.volume(snap))
    v = data[data["trace"] == "V / V0 (volume kept)"]
    np.testing.assert_allclose(v["y"].astype(float), snap.steps["volume"] / snap.v0)
    np.testing.assert_array_equal(v["x"].astype(float), snap.steps["step"])
    heat = export_files.figure_table(figures.channel_heatmap(snap, "bn1"))
    assert {"x", "y", "z"} <= set(heat) and len(heat[heat["trace"].str.startswith("heatmap")]) == 16 * len(snap.gates)


def test_run_zip_unpacks_to_a_folder_that_replays_the_same(run_dir, snap, tmp_path):
    copy = tmp_path / "copy" / "tiny"
    shutil.copytree(run_dir, copy)
    (copy / RUNNING_MARKER).write_text('{"pid": 1, "host": "elsewhere"}')  # a process's marker stays behind
    (copy / ".metrics.csv.tmp").write_text("half a write")
    blob = export_files.run_zip_bytes(copy)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        assert all(n.startswith("tiny/") for n in names)
        assert "tiny/checkpoint.pt" in names and "tiny/metrics.csv" in names
        assert f"tiny/{RUNNING_MARKER}" not in names and "tiny/.metrics.csv.tmp" not in names
        zf.extractall(tmp_path / "unzipped")
    again = snapshot_from_run(tmp_path / "unzipped" / "tiny")
    assert again.n_steps == snap.n_steps > 0 and again.state == snap.state == "done"
    for col, values in snap.steps.items():
        np.testing.assert_array_equal(again.steps[col], values, err_msg=col)
    assert again.epochs == snap.epochs and again.summary == snap.summary and again.layout == snap.layout
    assert [e for e, _ in again.gates] == [e for e, _ in snap.gates]
    for (_, g1), (_, g2) in zip(again.gates, snap.gates):
        for layer in g1:
            np.testing.assert_array_equal(g1[layer]["log_alpha"], g2[layer]["log_alpha"])
    with pytest.raises(export_files.RunFolderError, match="not a run folder"):
        export_files.run_zip_bytes(tmp_path)


def test_download_callables_make_the_files_when_called(run_dir, snap, browser):
    from bar_app import downloads

    calls = []

    def latest() -> go.Figure:  # a live chart's source: drawn at the click
        calls.append(1)
        return figures.volume(snap)

    assert not calls
    png = downloads.png_data(latest)()
    assert Image.open(io.BytesIO(png)).size == (export_files.PNG_WIDTH * downloads.PNG_SCALE, 380 * downloads.PNG_SCALE)
    assert "plotly.js v" in downloads.html_data(latest, "t")()
    assert pd.read_csv(io.BytesIO(downloads.csv_data(latest)())).shape[0] > snap.n_steps
    assert len(calls) == 3, "each file draws the figure anew"
    assert zipfile.ZipFile(io.BytesIO(downloads.zip_data(str(run_dir))())).testzip() is None
    assert downloads.file_stem("chart_volume", str(run_dir)) == "tiny-volume"


def test_every_chart_of_a_replayed_run_has_a_download_menu(run_dir, runs_dir):
    """AppTest: the view's chart has PNG, HTML, CSV and run-folder buttons, made only when clicked."""
    shutil.copytree(run_dir, runs_dir / "shown")
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        for view, chart in (("Volume & budget", "chart_volume"), ("Gates", "chart_hist")):
            at.session_state["view_tabs"] = view
            at.run()
            assert not at.exception, at.exception
            labels = {b.key: b.proto.label for b in at.get("download_button") if b.key.startswith(f"dl_{chart}_")}
            assert labels == {f"dl_{chart}_png": "Chart as PNG", f"dl_{chart}_html": "Chart as HTML (interactive, offline)",
                              f"dl_{chart}_csv": "Data as CSV", f"dl_{chart}_zip": "Run folder (.zip)"}, labels
    finally:
        st.cache_resource.clear()
