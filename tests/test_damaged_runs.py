"""Damaged run folders: each damaged file is named in one line, what it held is left out, and every
view the rest of the folder can draw is drawn (the reader, the runs table and the page)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bar_core.catalog import run_row
from bar_core.history import snapshot_from_run
from bar_core.job import JobManager
from bar_core.runs import _load_snapshots, _save_snapshots, load_run
from tests.helpers import as_text, tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    job = JobManager(root).start(tiny_config(), name="run")
    assert job.join(120) and job.state == "done"
    return root / "run"


def edit_summary(**changes):
    def damage(d: Path) -> None:
        s = json.loads((d / "summary.json").read_text())
        for k, v in changes.items():
            if v is None:
                s.pop(k)
            else:
                s[k] = v
        (d / "summary.json").write_text(json.dumps(s))
    return damage


def fewer_gates(d: Path) -> None:
    _save_snapshots(d / "gates.npz", _load_snapshots(d / "gates.npz")[:2])


# name -> (damage, the words of its problem line (None: nothing to report), whether the steps still draw)
DAMAGES = {
    "gates.npz cut short": (lambda d: (d / "gates.npz").write_bytes((d / "gates.npz").read_bytes()[:300]),
                            "gates.npz cannot be read", True),
    "config.json holding a list": (lambda d: (d / "config.json").write_text("[1, 2]"),
                                   "config.json holds a list", True),
    "events.jsonl lines that are not objects": (
        lambda d: (d / "events.jsonl").write_text('[1]\n"x"\n{"kind": "warning", "message": "kept", "step": 1}\n'),
        "events.jsonl: 2 lines not a JSON object", True),
    "gates.npz with fewer epochs than epochs.csv": (fewer_gates, None, True),
    "summary.json without volume_ratio": (edit_summary(volume_ratio=None), None, True),
    "summary.json with a string for a number": (edit_summary(pruned_accuracy="high"),
                                                "summary.json: pruned_accuracy is not of the right type", True),
    "summary.json holding a list": (lambda d: (d / "summary.json").write_text("[]"),
                                    "summary.json holds a list", True),
    "metrics.csv of another format": (lambda d: (d / "metrics.csv").write_text("step,phase\nx,y\n"),
                                      "metrics.csv:", False),
}


@pytest.fixture(params=list(DAMAGES), ids=list(DAMAGES))
def damaged(request, finished, tmp_path, runs_dir) -> tuple[Path, str | None, bool]:
    damage, words, steps_drawn = DAMAGES[request.param]
    path = runs_dir / "damaged"
    shutil.copytree(finished, path)
    damage(path)
    return path, words, steps_drawn


def test_the_reader_names_the_damaged_file_and_keeps_the_rest(damaged):
    path, words, steps_drawn = damaged
    run = load_run(path)
    snap = snapshot_from_run(run)
    if words:
        assert any(words in p for p in snap.problems), snap.problems
    assert snap.has_steps == steps_drawn
    assert run_row(path).state in ("done", "damaged")


def test_the_page_shows_the_damage_and_draws_every_view_it_can(damaged):
    from bar_app.views.registry import LABELS

    path, words, steps_drawn = damaged
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.selectbox(key="show").set_value(str(path)).run()
    for label in LABELS:
        at.session_state["view_tabs"] = label
        at.run()
        assert not at.exception, (label, at.exception)
        assert not [e.value for e in at.error if "could not be drawn" in e.value], label
    if words:
        shown = [as_text(w.value) for w in at.warning]
        assert any(words in w for w in shown), shown
    at.session_state["view_tabs"] = "Volume & budget"
    at.run()
    drawn = [c for c in at.get("plotly_chart") if c.key == "chart_volume"]
    assert bool(drawn) == steps_drawn
    st.cache_resource.clear()


def test_a_run_continued_after_an_error_is_not_shown_as_failed(runs_dir):
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(max_steps_per_epoch=40), name="failed-once")
    while job.alive and (job.trainer is None or job.trainer.step < 12):
        job.join(0.05)
    job.stop()
    assert job.join(60) and job.state == "stopped"
    with open(runs_dir / "failed-once" / "events.jsonl", "a") as f:  # an error an older session left, no step
        f.write(json.dumps({"kind": "error", "message": "boom", "step": None}) + "\n")
    assert snapshot_from_run(runs_dir / "failed-once").error == "boom"
    again = manager.start(None, continue_run=runs_dir / "failed-once")
    assert again.join(120) and again.state == "done"
    snap = snapshot_from_run(runs_dir / "failed-once")
    assert snap.state == "done" and snap.error is None
