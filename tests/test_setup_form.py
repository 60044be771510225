"""The set-up form follows the settings' declarations and the registries: every setting it offers,
its choices, its round trip to a TrainConfig, and refusals of values outside a declared range."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bar_app.views.setup import (
    FORM_KEYS,
    FORM_SETTINGS,
    PRESETS,
    SMOKE,
    config_from_values,
    label,
    values_from_config,
    widget_key,
)
from bar_core.barrier import SCHEDULES
from bar_core.config import SETTINGS, TrainConfig
from bar_core.data import DATASETS, ROOT_UNUSED, dataset_info
from bar_core.models import MODELS
from bar_core.presets import PRESETS as LIBRARY_PRESETS
from tests.helpers import tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")
WIDGET_KINDS = ("number_input", "selectbox", "toggle", "text_input")


@pytest.fixture(autouse=True)
def fresh_app_state(runs_dir):
    """A private runs folder and job manager per test (as tests/test_app.py does)."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def widgets(at: AppTest) -> dict[str, object]:
    return {w.key: w for kind in WIDGET_KINDS for w in getattr(at, kind) if w.key}


# ---- without a browser session

def test_every_setting_is_in_the_form_unless_declared_otherwise():
    assert {s.name for s in SETTINGS} - {s.name for s in FORM_SETTINGS} == {s.name for s in SETTINGS if not s.form}
    keys = set(values_from_config(TrainConfig()))
    assert {widget_key(s) for s in FORM_SETTINGS} | {"cfg_teacher_path"} == keys
    assert keys <= set(FORM_KEYS)


def test_the_form_offers_the_librarys_presets():
    """The CLI's --preset NAME and the form's Preset box start from the same settings."""
    for p in LIBRARY_PRESETS.values():
        assert PRESETS[p.label] == p.config, p.name
    assert len(PRESETS) == len(LIBRARY_PRESETS) + 1  # and the dashboard's lesson, BAR then L0


@pytest.mark.parametrize("cfg", [*PRESETS.values(),
                                 tiny_config(test_limit=200, schedule_k=3.0, weight_decay=0.0, beta=0.5, gamma=-0.2,
                                             zeta=1.2, margin=1e-3, tau=0.02, barrier_cap=100.0, download=True,
                                             data_root="/some/where", teacher="/a/teacher.pt", device="cpu")],
                         ids=[*PRESETS, "every-setting-changed"])
def test_round_trip(cfg):
    assert config_from_values(values_from_config(cfg)) == cfg


def test_zero_can_stand_for_unset():
    """An optional number's widget shows 0 for unset, so 0 must be outside its declared range."""
    for s in FORM_SETTINGS:
        if s.optional and s.type in (int, float):
            assert s.check(s.type(0)) is not None, s.name
            assert "(0 = " in label(s)


# ---- in the app

def test_form_offers_every_setting_with_its_declared_label():
    at = open_app()
    at.selectbox(key="preset").set_value(SMOKE).run()  # teacher 'none': the pretrain epochs apply
    at.selectbox(key="cfg_dataset").set_value("fashion-mnist").run()  # a dataset that reads a data root
    at.toggle(key="cfg_kd").set_value(True).run()
    assert not at.exception, at.exception
    drawn = widgets(at)
    at.selectbox(key="cfg_method").set_value("magnitude").run()  # its own settings, shown for it alone
    drawn |= widgets(at)
    for s in FORM_SETTINGS:
        w = drawn.get(widget_key(s))
        assert w is not None, f"the form has no widget for {s.name}"
        assert w.label.startswith(label(s)), (s.name, w.label)
    assert [e.label for e in at.expander if e.label == "Advanced"] == ["Advanced"]
    assert drawn["cfg_data_root"].label == "Data root (optional)"


def test_choices_are_the_registries():
    at = open_app()
    shown = [o.split()[0] for o in at.selectbox(key="cfg_dataset").options]  # "cifar10  (needs a data root)"
    assert shown == list(DATASETS)
    assert list(at.selectbox(key="cfg_model").options) == list(MODELS)
    assert list(at.selectbox(key="cfg_schedule").options) == list(SCHEDULES)


def test_settings_that_do_not_apply_are_hidden():
    at = open_app()  # the quick demo: shipped teacher, shipped subset, distillation on
    drawn = widgets(at)
    assert "cfg_pretrain_epochs" not in drawn and "cfg_data_root" not in drawn
    assert "cfg_kd_temperature" in drawn
    at.toggle(key="cfg_kd").set_value(False).run()
    assert "cfg_kd_temperature" not in widgets(at) and "cfg_kd_alpha" not in widgets(at)
    for name in DATASETS:
        at.selectbox(key="cfg_dataset").set_value(name).run()
        assert ("cfg_data_root" in widgets(at)) == (dataset_info(name).root != ROOT_UNUSED), name


def test_the_form_shows_the_settings_of_the_chosen_method():
    at = open_app()
    at.number_input(key="cfg_budget").set_value(0.125).run()  # a BAR budget, then another method
    assert "cfg_mac_ratio" not in widgets(at)
    at.selectbox(key="cfg_method").set_value("magnitude").run()
    drawn = widgets(at)
    assert "cfg_mac_ratio" in drawn and "cfg_importance" in drawn
    assert not {"cfg_budget", "cfg_schedule", "cfg_lam", "cfg_gate_lr", "cfg_barrier_cap"} & set(drawn)
    at.number_input(key="cfg_mac_ratio").set_value(0.3).run()
    cfg = config_from_values(at.session_state).validate()  # the hidden BAR budget is not sent
    assert (cfg.method, cfg.mac_ratio, cfg.budget) == ("magnitude", 0.3, TrainConfig().budget)
    at.selectbox(key="cfg_method").set_value("l0").run()
    drawn = widgets(at)
    assert "cfg_lam" in drawn and "cfg_gate_lr" in drawn and "cfg_budget" not in drawn and "cfg_mac_ratio" not in drawn


def test_advanced_values_reach_the_config_and_bad_ones_are_refused():
    at = open_app()
    at.number_input(key="cfg_weight_decay").set_value(1e-3)
    at.number_input(key="cfg_test_limit").set_value(300)
    at.number_input(key="cfg_schedule_k").set_value(6.0).run()
    cfg = config_from_values(at.session_state)
    assert (cfg.weight_decay, cfg.test_limit, cfg.schedule_k) == (1e-3, 300, 6.0)
    at.number_input(key="cfg_gamma").set_value(0.5).run()
    at.button(key="start").click().run()
    assert any("gamma must be < 0, got 0.5" in e.value for e in at.error), [e.value for e in at.error]
    from bar_app.state import get_manager
    assert get_manager().job is None
