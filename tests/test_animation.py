"""Replay as an animation (bar_core/animation.py): one figure whose frames are the run's steps, with
the volume, the barrier and the kept channels of that moment, played at the chosen speed."""
from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
import pytest

from bar_core import export_files
from bar_core.animation import death_steps, frame_rows, kept_per_epoch, replay_figure
from bar_core.figures import barrier_point
from bar_core.history import snapshot_from_run
from bar_core.job import JobManager
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    job = JobManager(root).start(tiny_config(prune_epochs=3), name="played")
    assert job.join(120) and job.state == "done"
    return snapshot_from_run(root / "played")


def values(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=float)


def test_frames_walk_the_run_at_the_chosen_speed(snap):
    fig = replay_figure(snap, playback_seconds=6.0, frames=20)
    go.Figure(fig.to_dict())  # valid plotly, frames included
    rows = frame_rows(snap.n_steps, 20)
    steps = snap.steps["step"]
    assert [f.name for f in fig.frames] == [str(int(steps[r])) for r in rows]
    assert rows[0] == 0 and rows[-1] == snap.n_steps - 1, "from the first step to the last"
    meta = fig.layout.meta
    assert meta["frames"] == len(rows) and meta["frame_ms"] == int(6000 / len(rows))
    play, pause = fig.layout.updatemenus[0].buttons
    assert play.label == "▶ Play" and play.args[1]["fromcurrent"], "Play goes on from where it was paused"
    assert play.args[1]["frame"]["duration"] == meta["frame_ms"]
    assert list(pause.args[0]) == [None], "Pause stops the animation where it is"
    assert [s.args[0][0] for s in fig.layout.sliders[0].steps] == [f.name for f in fig.frames]
    assert replay_figure(snap, 30.0, frames=20).layout.meta["frame_ms"] == int(30000 / len(rows))


def test_each_frame_shows_that_steps_volume_barrier_and_kept_channels(snap):
    fig = replay_figure(snap, frames=25)
    v0, s = snap.v0, snap.steps
    layers, total, gate_steps, kept = kept_per_epoch(snap)
    for frame in fig.frames:
        step = int(frame.name)
        r = int(np.flatnonzero(s["step"] == step)[0])
        vline, _, now, curve, point, _, kept_bar, pruned_bar = frame.data
        assert values(vline.x)[-1] == step, "the volume line is drawn up to this step"
        assert values(now.y)[0] == pytest.approx(s["volume"][r] / v0)
        p = barrier_point(snap, step)
        assert values(curve.x)[-1] < p.b / v0, "the barrier curve is drawn up to its wall at this step's b"
        assert values(point.x)[0] == pytest.approx(p.V / v0)
        # the latest gate snapshot taken by the end of this step (gate_steps count the steps done)
        g = max((i for i, gs in enumerate(gate_steps) if gs <= step + 1), default=None)
        want = total if g is None else list(kept[g])
        assert list(values(kept_bar.x)[::-1]) == want, f"kept channels at step {step}"
        assert list(values(kept_bar.x) + values(pruned_bar.x)) == total[::-1]
    assert fig.frames[0].layout.title.text.startswith("Step 0 ")


def test_a_layer_that_dies_is_named_from_that_step_and_its_bar_turns_red(snap):
    layers, total, gate_steps, kept = kept_per_epoch(snap)
    deaths = death_steps(layers, gate_steps, kept)
    fig = replay_figure(snap, frames=40)
    assert fig.layout.meta["deaths"] == deaths
    if not deaths:
        pytest.skip("this tiny run kept a channel in every layer")
    name, at = min(deaths.items(), key=lambda kv: kv[1])
    before = [f for f in fig.frames if int(f.name) + 1 < at]
    after = [f for f in fig.frames if int(f.name) + 1 >= at]
    assert after and name in after[-1].layout.title.text or "more" in after[-1].layout.title.text
    assert all(name not in f.layout.title.text for f in before)
    red = [c for c in after[-1].data[-1].marker.color if c != "#e0e0e0"]
    assert len(red) == len(deaths)


def test_death_steps_count_only_layers_that_stay_dead():
    kept = np.array([[4, 2, 3], [0, 1, 3], [0, 0, 3], [0, 1, 3]])
    assert death_steps(["a", "b", "c"], [0, 10, 20, 30], kept) == {"a": 10}


def test_the_downloaded_html_plays_on_its_own(snap):
    html = export_files.html_text(replay_figure(snap, frames=10))
    assert "Plotly.addFrames" in html and "fromcurrent" in html
    assert "\\u25b6 Play" in html or "▶ Play" in html
