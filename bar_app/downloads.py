"""Download menus under the dashboard's charts: the chart as PNG and as standalone HTML, the data it
draws as CSV, and the shown run's folder as a zip.

Every file is made only when its button is clicked: Streamlit's deferred download (`data` is a
callable, run in a worker thread of the server) and `on_click="ignore"` (no rerun). A redraw, live or
not, only registers the callables; a PNG (seconds: a headless Chromium draws it, bar_core/export_files.py)
is never computed for a redraw. For a chart that a live job updates, the callable draws the figure
again from the job's newest snapshot, so the file matches what the chart shows at the click.
The callables must not call Streamlit (their thread has no script context).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from bar_core import export_files

PNG_SCALE = 2  # PNG pixels per CSS pixel: sharp on slides

FigureSource = go.Figure | Callable[[], go.Figure]


def _figure(source: FigureSource) -> go.Figure:
    return source() if callable(source) else source


def png_data(source: FigureSource) -> Callable[[], bytes]:
    """The PNG download's callable. The shared browser stays open between clicks (closed when idle)."""
    def make() -> bytes:
        export_files.RENDERER.keep_open()
        return export_files.png_bytes(_figure(source), scale=PNG_SCALE)
    return make


def html_data(source: FigureSource, title: str) -> Callable[[], str]:
    return lambda: export_files.html_text(_figure(source), title=title)


def csv_data(source: FigureSource) -> Callable[[], bytes]:
    return lambda: export_files.csv_bytes(export_files.figure_table(_figure(source)))


def zip_data(run_dir: str) -> Callable[[], bytes]:
    return lambda: export_files.run_zip_bytes(run_dir)


def file_stem(key: str, run_dir: str | None) -> str:
    """"<run>-<chart>" for a chart key such as "chart_volume"."""
    chart = key.removeprefix("chart_")
    run = Path(run_dir).name if run_dir else "bar-explorer"
    return export_files.safe_stem(f"{run}-{chart}")


def chart_menu(key: str, source: FigureSource, *, run_dir: str | None = None, title: str | None = None) -> None:
    """A "Download" popover under the chart `key`: PNG, HTML, CSV of `source` (a figure, or a callable
    that draws the newest one), and the run folder `run_dir` as a zip when there is one."""
    stem = file_stem(key, run_dir)
    browser = export_files.find_chromium()
    with st.popover("Download", icon=":material/download:", key=f"dl_{key}"):
        st.download_button(
            "Chart as PNG", png_data(source), file_name=f"{stem}.png", mime="image/png", key=f"dl_{key}_png",
            on_click="ignore", disabled=browser is None, width="stretch",
            help=("Drawn by a headless Chromium when clicked (the first one takes a few seconds)." if browser else
                  f"PNG export needs Chromium, which is not installed here: {export_files.INSTALL_HINT}"))
        st.download_button(
            "Chart as HTML (interactive, offline)", html_data(source, title or stem), file_name=f"{stem}.html",
            mime="text/html", key=f"dl_{key}_html", on_click="ignore", width="stretch",
            help="One file with plotly.js inside: opens in any browser, no network needed.")
        st.download_button(
            "Data as CSV", csv_data(source), file_name=f"{stem}.csv", mime="text/csv", key=f"dl_{key}_csv",
            on_click="ignore", width="stretch", help="What the chart draws: one row per point (trace, x, y[, z]).")
        if run_dir and Path(run_dir).is_dir():
            st.download_button(
                "Run folder (.zip)", zip_data(run_dir), file_name=f"{Path(run_dir).name}.zip", mime="application/zip",
                key=f"dl_{key}_zip", on_click="ignore", width="stretch",
                help="Every file of the run (settings, metrics, gates, checkpoint): unzip it and replay it "
                     "here or read it with pandas.")
