"""The Runs and Compare pages and the page's URL, in AppTest over real tiny runs."""
from __future__ import annotations

import json
import shutil

import pytest
import streamlit as st

from bar_core.job import JobManager
from tests.helpers import as_text, tiny_config
from tests.test_app import chart_figure, chart_points, click, errors, open_app


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished tiny runs that differ in budget and seed."""
    root = tmp_path_factory.mktemp("template")
    manager = JobManager(root)
    for name, budget, seed in (("half", 0.5, 0), ("quarter", 0.25, 1)):
        job = manager.start(tiny_config(budget=budget, seed=seed), name=name)
        assert job.join(120) and job.state == "done"
    return root


@pytest.fixture(autouse=True)
def runs(runs_dir, two_runs):
    st.cache_resource.clear()
    shutil.copytree(two_runs, runs_dir)
    yield runs_dir
    st.cache_resource.clear()


def go(at, page: str):
    at.session_state["page"] = page
    at.run()
    assert not at.exception, at.exception
    return at


def pick(at, *names):
    at.multiselect(key="runs_picked").set_value(list(names)).run()
    assert not at.exception, at.exception
    return at


def table(at):
    frame = next(d for d in at.dataframe if d.proto.id and "runs_table" in d.proto.id).value
    return frame


def test_runs_table_lists_every_run_with_its_numbers_and_filters(runs):
    at = go(open_app(), "Runs")
    frame = table(at)
    assert sorted(frame["name"]) == ["half", "quarter"]
    half = frame.set_index("name").loc["half"]
    summary = json.loads((runs / "half" / "summary.json").read_text())
    assert half["state"] == "done" and half["B"] == "1/2" and half["1/B"] == 2.0 and half["seed"] == 0
    assert half["V/V0"] == pytest.approx(summary["volume_ratio"])
    assert half["pruned %"] == pytest.approx(100 * summary["pruned_accuracy"])
    at.text_input(key="runs_filter").set_value("quar").run()
    assert table(at)["name"].tolist() == ["quarter"]
    at.text_input(key="runs_filter").set_value("").run()
    at.selectbox(key="runs_sort").set_value("budget B").run()
    at.toggle(key="runs_ascending").set_value(True).run()
    assert table(at)["name"].tolist() == ["quarter", "half"]


def test_open_replays_the_run_on_the_watch_page(runs):
    at = pick(go(open_app(), "Runs"), "half")
    click(at, "runs_open")
    assert at.session_state["page"] == "Train & watch"
    assert at.session_state["run_path"] == str(runs / "half")
    assert chart_points(at, "chart_volume") > 0
    assert at.query_params["run"] == "half"


def test_rename_refuses_bad_names_and_delete_asks_first(runs):
    at = pick(go(open_app(), "Runs"), "half")
    for bad in ("../evil", "a/b", "quarter", "x\ty"):
        click(at, "runs_rename_open")
        at.text_input(key="runs_new_name").set_value(bad).run()
        click(at, "runs_rename")
        assert any(e.startswith("Not renamed:") for e in errors(at)), bad
    assert sorted(p.name for p in runs.iterdir()) == ["half", "quarter"]
    click(at, "runs_rename_open")
    at.text_input(key="runs_new_name").set_value("halfway").run()
    click(at, "runs_rename")
    assert sorted(p.name for p in runs.iterdir()) == ["halfway", "quarter"]
    assert at.multiselect(key="runs_picked").value == ["halfway"]
    click(at, "runs_delete_open")
    assert any("Delete 1 run folder for good: halfway" in w.value for w in at.warning)
    click(at, "runs_cancel")
    assert (runs / "halfway").is_dir()
    click(at, "runs_delete_open")
    click(at, "runs_delete")
    assert sorted(p.name for p in runs.iterdir()) == ["quarter"]
    assert table(at)["name"].tolist() == ["quarter"]


def test_rerun_loads_the_settings_and_a_broken_config_is_a_message(runs):
    at = pick(go(open_app(), "Runs"), "quarter")
    click(at, "runs_rerun")
    assert at.session_state["page"] == "Train & watch"
    assert at.session_state["cfg_budget"] == 0.25 and at.session_state["cfg_seed"] == 1
    assert at.session_state["cfg_dataset"] == "synthetic" and at.session_state["cfg_max_steps_per_epoch"] == 5
    assert any("Loaded the settings of quarter" in i.value for i in at.info)
    config = json.loads((runs / "half" / "config.json").read_text())
    config["budget"] = "a lot"
    (runs / "half" / "config.json").write_text(json.dumps(config))
    at = pick(go(at, "Runs"), "half")
    click(at, "runs_rerun")
    assert at.session_state["page"] == "Runs"
    assert any("Not loaded: half/config.json: budget must be a finite number" in e for e in errors(at))
    assert at.session_state["cfg_budget"] == 0.25, "the form keeps what it had"


def test_a_link_restores_the_form_and_the_view_and_names_what_it_ignored(runs):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"budget": "1/8", "lam": "1e-05", "schedule": "exp", "view": "barrier"})
    at.run()
    assert not at.exception
    assert (at.session_state["cfg_budget"], at.session_state["cfg_lam"]) == (0.125, 1e-5)
    assert at.session_state["cfg_schedule"] == "exp" and at.session_state["view_tabs"] == "Barrier"
    assert not at.warning or not any("ignored" in w.value for w in at.warning)
    at.number_input(key="cfg_budget").set_value(0.5).run()
    assert at.query_params["budget"] == "1/2" and at.query_params["schedule"] == "exp"

    bad = AppTest.from_file(APP, default_timeout=60)
    bad.query_params.update({"budget": "abc", "seed": "-1", "kd": "maybe", "page": "nowhere", "colour": "red",
                             "lam": "3e-6", "run": "../etc"})
    bad.run()
    assert not bad.exception
    warning = next(w.value for w in bad.warning if "ignored" in w.value)
    for needle in ("budget='abc'", "seed='-1'", "kd='maybe'", "page='nowhere'", "colour", "run='../etc'"):
        assert needle in warning, (needle, warning)
    assert bad.session_state["cfg_budget"] == 0.25 and bad.session_state["cfg_seed"] == 0, "defaults kept"
    assert bad.session_state["cfg_lam"] == 3e-6, "a good parameter beside bad ones still applies"
    assert bad.session_state["page"] == "Train & watch"


def test_compare_overlays_two_runs_with_pareto_gates_and_the_settings_that_differ(runs):
    at = pick(go(open_app(), "Runs"), "half", "quarter")
    click(at, "runs_compare")
    assert at.session_state["page"] == "Compare" and not errors(at)
    volume = chart_figure(at, "cmp_volume")
    assert [t["name"] for t in volume["data"]] == ["half", "quarter"]
    assert chart_points(at, "cmp_volume") > 0 and chart_points(at, "cmp_accuracy") > 0
    pareto = chart_figure(at, "cmp_pareto")
    assert pareto is not None and sum(len(t.get("x", [])) for t in pareto["data"] if "x" in t) >= 2
    assert chart_points(at, "cmp_gates_0") > 0 and chart_points(at, "cmp_gates_1") > 0
    assert [set(d.value.index) for d in at.dataframe] == [{"budget", "seed"}], "only the settings that differ"
    assert at.query_params["compare"] == "half,quarter"


def test_compare_from_a_link_names_what_is_no_run(runs):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP

    (runs / "notes").mkdir()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"page": "compare", "compare": "half,notes,../x"})
    at.run()
    assert not at.exception
    problems = errors(at)
    assert any("'notes'" in e and "not a run folder" in e for e in problems), problems
    assert any("'../x'" in e for e in problems), problems
    assert at.multiselect(key="compare_runs").value == ["half"]


def test_a_sweep_from_the_form_trains_every_budget_and_fills_the_pareto_chart(runs):
    import pandas as pd

    from tests.test_app import refresh_until, use_tiny_settings

    at = open_app()
    use_tiny_settings(at, prune_epochs=1, steps=4)
    for bad, needle in (("1/2,,1/4", "empty"), ("1/2,0.5", "1/2"), ("0,1/4", "0"), ("abc", "abc")):
        at.text_input(key="cfg_sweep_budgets").set_value(bad).run()
        click(at, "start")
        assert any(e.startswith("Not started:") and needle in e for e in errors(at)), (bad, errors(at))
    assert sorted(p.name for p in runs.iterdir()) == ["half", "quarter"], "nothing written"
    at.text_input(key="cfg_sweep_budgets").set_value("1/2,1/4").run()
    at.text_input(key="cfg_run_name").set_value("sw").run()
    click(at, "start")
    assert not errors(at), errors(at)
    refresh_until(at, lambda a: any("Sweep sw: run" in as_text(c.value) for c in a.caption), timeout=60)

    def ended(a):
        from bar_app.state import get_manager
        return not get_manager().job.active
    refresh_until(at, ended, timeout=180)
    at.run()
    assert any("Sweep so far: 2 of 2 runs ended" in e.label for e in at.expander)
    pareto = chart_figure(at, "sweep_pareto")
    assert pareto is not None and len(pareto["data"][0]["x"]) == 2
    table = pd.read_csv(runs / "sw" / "sweep.csv")
    assert sorted(table["budget"]) == [0.25, 0.5] and set(table["state"]) == {"done"}
    # the sweep's runs are rows of the runs table
    at = go(at, "Runs")
    assert {"sw/b0.5-s0", "sw/b0.25-s0"} <= set(table_names(at))


def table_names(at):
    return table(at)["name"].tolist()


def test_a_replay_shows_its_own_settings_and_not_the_jobs_controls(runs):
    from bar_app.state import get_manager

    job = get_manager().start(tiny_config(budget=0.75), name="current")
    assert job.join(120)
    at = open_app()
    assert at.selectbox(key="show").value == "live" and at.button(key="pause")
    at.selectbox(key="show").set_value(str(runs / "half")).run()
    assert not at.exception
    assert not [b for b in at.button if b.key in ("pause", "resume", "stop")], "no controls of another run"
    assert any("Current job current:" in as_text(c.value) for c in at.caption)
    settings = next(e for e in at.expander if e.label == "Settings of this run")
    assert any("**Budget B**: 0.5 " in m.value for m in settings.markdown)
    assert at.session_state["cfg_budget"] == 0.25
    click(at, "replay_half_rerun")
    assert at.session_state["cfg_budget"] == 0.5 and at.session_state["cfg_seed"] == 0


def test_a_refusal_under_start_goes_once_the_form_changes(runs):
    at = open_app()
    at.number_input(key="cfg_budget").set_value(1.5).run()
    click(at, "start")
    assert any("budget must be in (0, 1]" in e for e in errors(at))
    at.run()
    assert any("budget must be in (0, 1]" in e for e in errors(at)), "it stays while nothing changed"
    at.number_input(key="cfg_budget").set_value(0.5).run()
    assert not any("budget" in e for e in errors(at)), errors(at)


def test_the_budget_field_reads_as_a_fraction_and_nonsense_is_said_at_once(runs):
    at = open_app()
    captions = lambda: [c.value for c in at.caption]  # noqa: E731
    at.number_input(key="cfg_budget").set_value(0.125).run()
    assert any(c.startswith("B = 1/8: keep 12.5% of V0") and "8×" in c for c in captions())
    at.number_input(key="cfg_budget").set_value(1.5).run()
    assert any("B must be in (0, 1]; Start refuses 1.5" in c for c in captions()), captions()
    at.number_input(key="cfg_budget").set_value(1e-9).run()
    assert any(c.startswith("B = 1e-09") for c in captions()), captions()
    click(at, "start")
    assert any("budget 1e-09 is too small for margin" in e for e in errors(at)), errors(at)
    assert not any(p.name.startswith("resnet8") for p in runs.iterdir()), "nothing started"


def test_a_gpu_preset_on_a_cpu_machine_says_how_long_it_would_take(runs, monkeypatch):
    import torch

    from bar_app.views.setup import PAPER

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    at = open_app()
    assert any(c.value.startswith("Training time here: about") for c in at.caption), "the quick demo's estimate"
    at.selectbox(key="preset").set_value(PAPER).run()
    warning = next(w.value for w in at.warning if "long for this machine" in w.value)
    assert "no CUDA GPU is available here" in warning and "220 epochs, 11,000,000 training images" in warning
    assert "days" in warning or "hours" in warning
    click(at, "start")  # no CIFAR-10 here: the message speaks of the form's fields, not of CLI options
    message = next(e for e in errors(at) if e.startswith("Not started"))
    assert "“Data root”" in message and "--" not in message, message
