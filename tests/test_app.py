"""The dashboard's flows, headless with streamlit.testing's AppTest (run_every never fires here:
each `at.run()` is one refresh)."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import bar_core.trainer as trainer_mod
from bar_app.views.registry import BY_LABEL
from bar_app.views.setup import PAPER, PRESETS, QUICK, SMOKE, config_from_values, values_from_config
from bar_core.config import TrainConfig
from bar_core.job import JobManager
from bar_core.runs import list_runs
from tests.helpers import as_text, tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")
# Views are lazy: only the chosen one is drawn. Chart key -> its view.
CHARTS = {"chart_volume": "Volume & budget", "chart_barrier": "Barrier", "chart_hist": "Gates",
          "chart_heatmap": "Gates", "chart_icdf": "Hard Concrete", "chart_conn": "Connectivity",
          "chart_kept": "Connectivity", "chart_training": "Accuracy & speed",
          "chart_sandbox": "Barrier sandbox", "chart_replay": "Replay"}


@pytest.fixture(autouse=True)
def fresh_app_state(runs_dir):
    """Each test gets its own runs folder and job manager; any job left running is stopped
    (clearing the cache calls the manager's on_release, which stops and joins the job)."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def manager() -> JobManager:
    from bar_app.state import get_manager
    return get_manager()


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def use_tiny_settings(at: AppTest, prune_epochs: int = 2, steps: int = 5) -> None:
    at.selectbox(key="preset").set_value(SMOKE).run()
    at.number_input(key="cfg_prune_epochs").set_value(prune_epochs)
    at.number_input(key="cfg_max_steps_per_epoch").set_value(steps)
    at.number_input(key="cfg_batch_size").set_value(32)
    at.run()


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def chart_figure(at: AppTest, key: str) -> dict | None:
    """The figure of the chart `key`, drawn by st.plotly_chart or by bar_app/live_plot.py's component."""
    el = next((c for c in at.get("plotly_chart") if getattr(c, "key", None) == key), None)
    if el is not None:
        return json.loads(el.proto.spec)
    el = next((c for c in at.get("bidi_component") if getattr(c, "key", None) == key), None)
    return None if el is None else json.loads(json.loads(el.proto.json)["figure"])


def decoded(values) -> np.ndarray:
    """A figure's array, plain or as plotly's typed-array encoding {dtype, bdata}."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray(values if values is not None else [])


def chart_points(at: AppTest, key: str) -> int:
    """Points in the first trace of a chart (typed arrays decoded), 0 if absent."""
    fig = chart_figure(at, key)
    if not fig or not fig.get("data"):
        return 0
    first = fig["data"][0]
    return len(decoded(first.get("x", first.get("z"))))


def open_tab(at: AppTest, label: str) -> AppTest:
    at.session_state["view_tabs"] = label
    at.run()
    assert not at.exception, at.exception
    return at


def points_in_every_view(at: AppTest) -> dict[str, int]:
    points = {}
    for key, tab in CHARTS.items():
        open_tab(at, tab)
        points[key] = chart_points(at, key)
        notes = [e.label for e in at.expander if e.label.startswith("What am I looking at?")]
        assert notes == [f"What am I looking at? — {BY_LABEL[tab].title}"], (tab, notes)  # the chosen view's
    open_tab(at, "Volume & budget")
    return points


def progress_text(at: AppTest) -> str:
    bars = at.get("progress")
    return bars[0].proto.text if bars else ""


def errors(at: AppTest) -> list[str]:
    return [as_text(e.value) for e in at.error]


def refresh_until(at: AppTest, cond, timeout: float = 60.0) -> AppTest:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at.run()
        assert not at.exception, at.exception
        if cond(at):
            return at
        time.sleep(0.2)
    raise AssertionError(f"timed out; progress: {progress_text(at)!r}, errors: {errors(at)}")


def test_idle_page_teaches_without_training():
    at = open_app()
    assert manager().job is None
    assert at.selectbox(key="preset").value == QUICK
    assert TrainConfig().validate()  # the quick demo is the config defaults
    assert at.number_input(key="cfg_budget").value == TrainConfig().budget
    open_tab(at, "Hard Concrete")
    assert chart_points(at, "chart_icdf") > 100, "Hard Concrete curves need no run"
    assert chart_points(at, "chart_volume") == 0, "views not chosen are not drawn"
    at.slider(key="hc_log_alpha").set_value(-2.0).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["P(z > 0)"] == "0.4010" and metrics["P(z = 1) (fully on)"] == "0.0266"
    assert any("pruning factor 1/B = **4×**" in c.value for c in at.caption)
    open_tab(at, "Barrier")
    open_tab(at, "Hard Concrete")
    assert at.slider(key="hc_log_alpha").value == -2.0, "a view keeps its settings while another is shown"


def schedule_end(at: AppTest) -> tuple[float, float]:
    """(first, last) b/V0 of the planned-schedule chart."""
    y = decoded(chart_figure(at, "chart_schedule")["data"][0]["y"])
    return float(y[0]), float(y[-1])


def test_idle_volume_view_shows_the_planned_schedule_and_follows_the_form():
    at = open_app()
    open_tab(at, "Volume & budget")
    assert chart_points(at, "chart_schedule") > 100
    start, end = schedule_end(at)
    assert start == pytest.approx(1.01) and end == pytest.approx(0.25)
    at.number_input(key="cfg_budget").set_value(0.125).run()
    assert schedule_end(at)[1] == pytest.approx(0.125), "the preview follows the budget in the form"
    at.number_input(key="cfg_budget").set_value(0.0).run()
    assert chart_points(at, "chart_schedule") == 0 and not at.exception
    assert any("planned budget schedule appears" in c.value for c in at.caption)


def test_start_live_updates_and_finishes():
    at = open_app()
    use_tiny_settings(at)
    click(at, "start")
    assert not errors(at)
    job = manager().job
    assert job is not None and job.state in ("starting", "running", "done")
    assert at.button(key="start").disabled or job.state == "done"
    first = chart_points(at, "chart_volume")
    refresh_until(at, lambda a: chart_points(a, "chart_volume") > first)  # a refresh shows new steps
    assert job.join(120)
    refresh_until(at, lambda a: "done" in progress_text(a))
    points = points_in_every_view(at)
    assert all(n > 0 for n in points.values()), points
    assert len(at.expander) >= 2, "the intro and the open view's explanation"
    labels = {m.label for m in at.metric}
    assert {"V / V0", "Accuracy", "Channels kept"} <= labels
    assert not at.button(key="start").disabled
    assert list_runs(manager().runs_root) == [job.run_dir]


def test_sidebar_shows_the_running_set_up_and_keeps_the_form_values():
    at = open_app()
    use_tiny_settings(at, prune_epochs=60, steps=10)
    at.number_input(key="cfg_lam").set_value(3e-6)
    at.number_input(key="cfg_seed").set_value(7)
    at.text_input(key="cfg_run_name").set_value("kept-values").run()
    click(at, "start")
    job = manager().job
    # while it trains: what the job runs with, not the form (which could have been edited since)
    summary = " ".join(m.value for m in at.sidebar.markdown)
    assert "- **Model**: resnet8 on synthetic" in summary and "- **λ**: 3.00e-06" in summary
    assert "- **Epochs**: 1 pretrain + 60 prune + 1 fine-tune" in summary
    assert "- **Seed, device, threads**: 7, auto, 1" in summary and "pruning factor 4×" in summary
    assert len(at.number_input) == 0 and at.button(key="start").disabled
    # the form comes back on demand, with the values typed before Start
    at.toggle(key="setup_edit").set_value(True).run()
    assert at.number_input(key="cfg_lam").value == 3e-6 and at.number_input(key="cfg_seed").value == 7
    at.number_input(key="cfg_seed").set_value(8).run()  # the next run's set-up, prepared meanwhile
    at.toggle(key="setup_edit").set_value(False).run()
    assert len(at.number_input) == 0
    click(at, "stop")
    assert job.join(60)
    refresh_until(at, lambda a: not manager().busy and len(a.number_input) > 0)
    assert at.number_input(key="cfg_lam").value == 3e-6 and at.number_input(key="cfg_seed").value == 8
    assert at.number_input(key="cfg_prune_epochs").value == 60
    assert at.text_input(key="cfg_run_name").value == "kept-values" and not at.button(key="start").disabled


def test_pause_resume_and_stop():
    at = open_app()
    use_tiny_settings(at, prune_epochs=60, steps=10)
    click(at, "start")
    job = manager().job
    refresh_until(at, lambda a: job.snapshot().n_steps >= 5)
    click(at, "pause")
    assert job.state == "paused" and "paused" in progress_text(at)
    assert not at.button(key="resume").disabled and at.button(key="pause").disabled
    end = time.monotonic() + 10
    while job.trainer.state != "paused" and time.monotonic() < end:
        time.sleep(0.05)
    n = job.snapshot().n_steps
    time.sleep(0.4)
    at.run()
    assert job.snapshot().n_steps == n
    click(at, "resume")
    refresh_until(at, lambda a: job.snapshot().n_steps > n + 2)
    click(at, "stop")
    assert job.join(60) and job.state == "stopped"
    refresh_until(at, lambda a: "stopped" in progress_text(a))
    assert (job.run_dir / "checkpoint.pt").is_file()
    assert at.button(key="stop").disabled and not at.button(key="start").disabled
    # Resume after Stop continues the stopped run from its checkpoint, in the same folder
    assert not at.button(key="resume").disabled
    stopped_at = job.trainer.step
    click(at, "resume")
    again = manager().job
    assert again is not job and again.run_dir == job.run_dir and again.trainer.step >= stopped_at
    refresh_until(at, lambda a: again.snapshot().n_steps > stopped_at + 2)
    again.stop()
    assert again.join(60) and again.state == "stopped"


@pytest.mark.parametrize("field, value, message", [
    ("cfg_budget", 0.0, "budget must be in (0, 1]"),
    ("cfg_budget", 1.5, "budget must be in (0, 1]"),
    ("cfg_lam", -1e-6, "lam must be >= 0"),
    ("cfg_prune_epochs", 0, "prune_epochs must be >= 1"),
    ("cfg_kd_alpha", 2.0, "kd_alpha must be in [0, 1]"),
    ("cfg_gate_init", -5.0, "gate_init must keep every gate open"),
])
def test_invalid_values_are_refused_before_anything_starts(field, value, message):
    at = open_app()
    use_tiny_settings(at)
    if field == "cfg_kd_alpha":
        at.toggle(key="cfg_kd").set_value(True).run()
    at.number_input(key=field).set_value(value).run()
    click(at, "start")
    assert any(message in e for e in errors(at)), errors(at)
    assert manager().job is None and list_runs(manager().runs_root) == []


def test_missing_data_and_bad_teacher_are_messages(tmp_path):
    at = open_app()
    use_tiny_settings(at)
    at.selectbox(key="cfg_dataset").set_value("cifar10").run()
    at.text_input(key="cfg_data_root").set_value(str(tmp_path / "nowhere")).run()
    click(at, "start")
    assert any("Not started" in e and "cifar" in e.lower() for e in errors(at)), errors(at)
    at.selectbox(key="cfg_dataset").set_value("synthetic").run()
    junk = tmp_path / "teacher.pt"
    junk.write_bytes(b"garbage")
    at.selectbox(key="cfg_teacher_mode").set_value("file").run()
    at.text_input(key="cfg_teacher_path").set_value(str(junk)).run()
    click(at, "start")
    assert any("corrupt or not a torch checkpoint" in e for e in errors(at)), errors(at)
    at.selectbox(key="cfg_teacher_mode").set_value("none").run()
    at.text_input(key="cfg_run_name").set_value("../outside").run()
    click(at, "start")
    assert any("is not allowed" in e for e in errors(at)), errors(at)
    at.text_input(key="cfg_run_name").set_value("").run()
    assert manager().job is None and list_runs(manager().runs_root) == []
    # still usable: a good config starts
    click(at, "start")
    assert not errors(at) and manager().job is not None
    manager().job.join(120)


def test_presets_round_trip_and_paper_preset_needs_cifar(tmp_path):
    for name, cfg in PRESETS.items():
        assert config_from_values(values_from_config(cfg)).validate() == cfg.validate(), name
    at = open_app()
    at.selectbox(key="preset").set_value(PAPER).run()
    assert at.selectbox(key="cfg_model").value.startswith("wrn16_")
    assert at.selectbox(key="cfg_dataset").value == "cifar10"
    assert at.text_input(key="cfg_data_root") is not None, "CIFAR needs a data-root field"
    at.text_input(key="cfg_data_root").set_value(str(tmp_path / "no-cifar-here")).run()
    click(at, "start")
    assert any("Not started" in e and "cifar" in e.lower() for e in errors(at)), errors(at)
    assert manager().job is None


def test_reload_finds_the_running_job_and_never_starts_a_second():
    stale = open_app()  # a tab opened before the job: its Start button is still enabled
    use_tiny_settings(stale)
    at = open_app()
    use_tiny_settings(at, prune_epochs=60, steps=10)
    click(at, "start")
    job = manager().job
    reloaded = open_app()  # a browser reload is a new session
    assert reloaded.selectbox(key="show").value == "live"
    assert reloaded.button(key="start").disabled
    assert f"`{job.name}`" in " ".join(m.value for m in reloaded.markdown)
    refresh_until(reloaded, lambda a: chart_points(a, "chart_volume") > 0)
    click(stale, "start")  # the click reaches a page where Start is now disabled: nothing starts
    assert stale.button(key="start").disabled
    assert any("stop it to start another" in c.value for c in stale.caption)
    assert manager().job is job
    threads = [t for t in __import__("threading").enumerate() if t.name.startswith("bar-job-")]
    assert len(threads) == 1
    click(reloaded, "stop")  # any tab controls the one job
    assert job.join(60) and job.state == "stopped"


def test_training_error_is_shown_and_the_app_stays_usable(monkeypatch):
    monkeypatch.setattr(trainer_mod, "bar_objective", lambda d, s, f, lam: d * float("nan"))
    at = open_app()
    use_tiny_settings(at)
    click(at, "start")
    job = manager().job
    assert job.join(60) and job.state == "error"
    refresh_until(at, lambda a: any("loss became nan" in e for e in errors(a)))
    msg = next(e for e in errors(at) if "loss became nan" in e)
    assert "run folder is kept" in msg and str(job.run_dir) in msg
    assert job.run_dir.is_dir()
    assert chart_points(at, "chart_volume") > 0, "what ran before the error is still drawn"
    monkeypatch.undo()
    assert not at.button(key="start").disabled
    click(at, "start")
    assert manager().job is not job and not errors(at)
    manager().job.join(120)


def test_past_runs_replay_every_view(runs_dir):
    past = JobManager(runs_dir).start(tiny_config(), name="from-the-cli")
    assert past.join(120)
    at = open_app()
    assert at.selectbox(key="show").value == str(runs_dir / "from-the-cli")
    points = points_in_every_view(at)
    assert all(n > 0 for n in points.values()), points
    assert any("Replaying" in c.value for c in at.caption)
    # drawing (the connectivity view rebuilds the model) never draws from torch's global generator,
    # which a training thread in the same process would be using
    state = torch.random.get_rng_state()
    open_tab(at, "Connectivity")
    assert torch.equal(state, torch.random.get_rng_state())
    # look back in time: the barrier at an earlier step, the gates at epoch 0 ... 1
    open_tab(at, "Barrier")
    slider = next(s for s in at.slider if s.key.startswith("barrier_step_"))
    slider.set_value(slider.min + 1).run()
    assert not at.exception
    assert any(b.key.endswith("_followbtn") for b in at.button)
    open_tab(at, "Gates")
    ep = next(s for s in at.select_slider if s.key.startswith("gates_epoch_"))
    ep.set_value(ep.options[0]).run()
    assert not at.exception and chart_points(at, "chart_hist") > 0
    # and by path, as for a run written elsewhere
    open_tab(at, "Volume & budget")
    at.selectbox(key="show").set_value("__path__").run()
    at.text_input(key="run_path").set_value(str(runs_dir / "from-the-cli")).run()
    assert chart_points(at, "chart_volume") > 0
    at.text_input(key="run_path").set_value(str(runs_dir / "nothing-here")).run()
    assert any("not a run folder" in e for e in errors(at))


def test_views_update_in_place_when_the_server_serves_plotly_js(runs_dir, monkeypatch):
    """With static serving on (`python -m bar_app`, `make run`), every chart goes through the component
    that updates one Plotly div in place (bar_app/live_plot.py), with the same figures."""
    import bar_app.live_plot as live_plot
    monkeypatch.setattr(live_plot, "available", lambda: True)
    past = JobManager(runs_dir).start(tiny_config(), name="replayed")
    assert past.join(120)
    at = open_app()
    points = points_in_every_view(at)
    assert all(n > 0 for n in points.values()), points
    assert not at.get("plotly_chart"), "no chart is rebuilt by st.plotly_chart"
    comp = next(c for c in at.get("bidi_component") if c.key == "chart_volume")
    data = json.loads(comp.proto.json)
    assert data["src"] == live_plot.STATIC_URL and data["config"] == live_plot.CONFIG
    volume = json.loads(data["figure"])["data"][0]
    assert volume["y"]["dtype"] == "f4", "float arrays go to the browser in single precision"
    assert decoded(volume["y"])[0] == pytest.approx(1.0), "V/V0 starts at 1"


def test_live_charts_send_single_precision_arrays_with_the_same_values():
    """The component sends float64 arrays as float32 (half the bytes every second), everything else as is."""
    import plotly.graph_objects as go

    from bar_app.live_plot import single_precision
    x = np.arange(1500, dtype=np.float64)
    y = np.sin(x / 100) / 3 + 0.25
    y[7] = np.nan  # a gap (a step without a budget) stays a gap
    z = np.random.default_rng(0).random((12, 16))
    fig = go.Figure([go.Scatter(x=x, y=y, name="V / V0"), go.Heatmap(z=z, y=np.arange(12, dtype=np.int32))])
    full = json.loads(pio.to_json(fig, validate=False))
    half = json.loads(pio.to_json(single_precision(fig.to_plotly_json()), validate=False))
    assert len(json.dumps(half)) < 0.6 * len(json.dumps(full))
    line, heat = half["data"]
    assert line["x"]["dtype"] == line["y"]["dtype"] == heat["z"]["dtype"] == "f4"
    np.testing.assert_array_equal(decoded(line["x"]), x)  # steps are exact in float32
    np.testing.assert_allclose(decoded(line["y"]), y, rtol=1e-7, equal_nan=True)
    assert np.isnan(decoded(line["y"])[7])
    assert heat["z"]["shape"] == full["data"][1]["z"]["shape"]
    np.testing.assert_allclose(decoded(heat["z"]).reshape(12, 16), z, rtol=1e-7)
    assert heat["y"] == full["data"][1]["y"], "integer arrays are left alone"
    assert line["name"] == "V / V0" and half["layout"] == full["layout"]


def test_plotly_js_is_copied_for_static_serving_once_and_atomically(tmp_path):
    from bar_app.live_plot import PLOTLY_JS, ensure_static_plotly
    static = tmp_path / "static"
    assert ensure_static_plotly(static) and (static / "plotly.min.js").read_bytes() == PLOTLY_JS.read_bytes()
    mtime = (static / "plotly.min.js").stat().st_mtime_ns
    assert ensure_static_plotly(static) and (static / "plotly.min.js").stat().st_mtime_ns == mtime, "copied once"
    (static / "plotly.min.js").write_text("half a file")
    assert ensure_static_plotly(static) and (static / "plotly.min.js").stat().st_size == PLOTLY_JS.stat().st_size
    assert sorted(p.name for p in static.iterdir()) == ["plotly.min.js"], "no temporary file left behind"
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    assert not ensure_static_plotly(blocked), "cannot copy: the caller falls back to st.plotly_chart"


def stopped_run(runs_dir: Path, name: str, min_steps: int) -> int:
    """A run stopped after at least `min_steps` steps (written outside the app); its step count."""
    job = JobManager(runs_dir).start(tiny_config(prune_epochs=3, max_steps_per_epoch=10), name=name)
    end = time.monotonic() + 60
    while job.snapshot().n_steps < min_steps and time.monotonic() < end:
        time.sleep(0.05)
    job.stop()
    assert job.join(60) and job.state == "stopped"
    return job.trainer.step


def test_a_stopped_run_continues_from_the_page(runs_dir):
    stopped_at = stopped_run(runs_dir, "stopped-early", min_steps=12)
    finished = JobManager(runs_dir).start(tiny_config(), name="finished")
    assert finished.join(120)

    at = open_app()
    at.selectbox(key="show").set_value(str(runs_dir / "finished")).run()
    assert not [b for b in at.button if b.key == "continue_run"]  # a finished run has nothing to continue
    at.selectbox(key="show").set_value(str(runs_dir / "stopped-early")).run()
    assert chart_points(at, "chart_volume") == stopped_at
    click(at, "continue_run")
    job = manager().job
    assert job is not None and job.name == "stopped-early" and at.selectbox(key="show").value == "live"
    assert job.join(120) and job.state == "done"
    refresh_until(at, lambda a: "done" in progress_text(a))
    total = job.snapshot().layout["total_steps"]
    assert chart_points(at, "chart_volume") >= total  # the old steps and the new ones, in one chart
    assert not errors(at)


def test_continuing_a_run_with_a_broken_checkpoint_is_a_message(runs_dir):
    stopped_run(runs_dir, "broken", min_steps=5)
    (runs_dir / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    at = open_app()
    at.selectbox(key="show").set_value(str(runs_dir / "broken")).run()
    click(at, "continue_run")
    assert any(e.startswith("Not continued:") and "checkpoint" in e for e in errors(at)), errors(at)
    assert manager().job is None and not manager().busy
    assert chart_points(at, "chart_volume") > 0  # the page still shows the run


def test_pruned_network_summary_and_download(runs_dir):
    """Connectivity view: build the physically pruned network, see its MAC reduction next to the measured
    speedup, and download it as a zip that reloads without the training classes."""
    import io
    import zipfile

    from bar_core.export import load_pruned

    past = JobManager(runs_dir).start(tiny_config(), name="to-prune")
    assert past.join(120)
    at = open_app()
    open_tab(at, "Connectivity")
    click(at, "btn_pruned")
    assert not errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["MAC reduction"].rstrip("×")) >= 1.0
    assert float(metrics["Measured speedup"].rstrip("×")) > 0
    assert 0 < float(metrics["MACs kept"].rstrip(" %")) <= 100
    download = next(el for el in at.get("download_button") if "pruned" in el.proto.label.lower())
    assert download.proto.label.startswith("Download the pruned model")
    # the bytes the button serves: the same package the view built
    blob = at.session_state["pruned_reports"]
    blob = next(iter(blob.values()))["zip"]
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        zf.extractall(runs_dir / "unzipped")
    net = load_pruned(runs_dir / "unzipped" / "pruned")
    with torch.no_grad():
        assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
