"""Settings declared once (bar_core/config.py): the CLI, validation and docs/settings.md all follow the
declarations; datasets and models each have one registry that everything lists."""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest

from bar_core.barrier import SCHEDULES
from bar_core.cli import build_parser, main
from bar_core.config import GROUPS, RULES, SETTING, SETTINGS, ConfigError, TrainConfig, settings_markdown
from bar_core.data import DATASETS, dataset_info, describe_datasets
from bar_core.models import MODELS, describe_models

REPO = Path(__file__).resolve().parent.parent
NUMBERS = [s for s in SETTINGS if s.type in (int, float)]


def train_options() -> dict[str, argparse.Action]:
    """`bar train`'s options by destination."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["train"]._actions}


def one_line(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


# ---- the declarations

def test_every_field_is_declared_once_in_a_group():
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"]
    assert [s.name for s in SETTINGS] == fields, "declaration order is the order everything shows"
    assert all(s.group in GROUPS for s in SETTINGS)
    assert [g for g in GROUPS if any(s.group == g for s in SETTINGS)] == list(GROUPS), "no empty group"
    defaults = TrainConfig()
    for s in SETTINGS:
        assert getattr(defaults, s.name) == s.default, s.name
        assert s.help and s.type in (bool, int, float, str), s.name
        assert s.optional == (s.default is None), s.name
    assert defaults.validate() is defaults


def test_choices_come_from_the_registries():
    assert SETTING["model"].choice_list() == MODELS
    assert SETTING["dataset"].choice_list() == DATASETS
    assert SETTING["schedule"].choice_list() == SCHEDULES
    assert [m["name"] for m in describe_models()] == list(MODELS)
    assert [d["name"] for d in describe_datasets()] == list(DATASETS)


def test_only_where_it_runs_may_change_on_resume():
    # compile only reorders float sums, as threads do
    assert {s.name for s in SETTINGS if s.resumable} == {"device", "threads", "compile", "tensorboard"}


# ---- (a) the CLI

def test_every_setting_is_an_option_with_its_help():
    options = train_options()
    for s in SETTINGS:
        action = options.get(s.name)
        assert action is not None, f"no option for {s.name}"
        assert s.flag in action.option_strings and action.default is None, s.name
        assert s.help in action.help and s.default_text() in action.help, (s.name, action.help)
        if s.type is bool:
            assert f"--no-{s.flag[2:]}" in action.option_strings, s.name
        elif s.choices:
            assert all(c in action.help for c in s.choice_list()), s.name
    config_dests = {d for d in options} - {"help", "out", "config", "preset", "resume", "overwrite", "quiet"}
    assert config_dests == set(SETTING), "an option that is no setting"


def test_help_lists_every_flag_by_group(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for s in SETTINGS:
        assert s.flag in out, s.flag
    positions = [out.index(f"{g.lower()}:") for g in GROUPS]
    assert positions == sorted(positions)


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.type is bool], ids=lambda s: s.name)
def test_boolean_flags_both_ways(s):
    parser = build_parser()
    assert getattr(parser.parse_args(["train", s.flag]), s.name) is True
    assert getattr(parser.parse_args(["train", f"--no-{s.flag[2:]}"]), s.name) is False
    assert getattr(parser.parse_args(["train"]), s.name) is None


def test_fractions_and_numbers_parse():
    args = build_parser().parse_args(["train", "--budget", "1/4", "--lam", "2e-6", "--prune-epochs", "3",
                                      "--gamma=-0.2", "--no-kd"])
    assert (args.budget, args.lam, args.prune_epochs, args.gamma, args.kd) == (0.25, 2e-6, 3, -0.2, False)


# ---- (c) validation, from the declarations

def outside(s) -> list:
    """Values just outside the declared range of a number setting."""
    step = 1 if s.type is int else 0.5
    bad = []
    if s.low is not None:
        bad.append(s.type(s.low) if s.low_open else s.type(s.low - step))
    if s.high is not None:
        bad.append(s.type(s.high) if s.high_open else s.type(s.high + step))
    return bad


RANGED = [(s, v) for s in NUMBERS for v in outside(s)]


def test_every_number_but_gate_init_has_a_range():
    assert {s.name for s in NUMBERS if s.low is None and s.high is None} == {"gate_init"}  # a rule checks it


@pytest.mark.parametrize("s, value", RANGED, ids=[f"{s.name}={v}" for s, v in RANGED])
def test_out_of_range_is_refused_naming_the_setting(s, value):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{s.name: value}).validate()
    msg = str(e.value)
    assert msg.startswith(s.name) and repr(value) in msg and s.range_text() in msg and "\n" not in msg, msg


@pytest.mark.parametrize("s", NUMBERS, ids=lambda s: s.name)
def test_closed_bounds_are_allowed(s):
    for bound, is_open in ((s.low, s.low_open), (s.high, s.high_open)):
        if bound is not None and not is_open:
            method = s.methods[0] if s.methods else "bar"  # another method would refuse it as ignored
            TrainConfig(**{s.name: s.type(bound), "method": method}).validate()


@pytest.mark.parametrize("s, value", RANGED[::3], ids=[f"{s.name}={v}" for s, v in RANGED[::3]])
def test_cli_refuses_out_of_range_with_one_line(tmp_path, capsys, s, value):
    out = tmp_path / "run"
    assert main(["train", f"{s.flag}={value}", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert s.name in line and s.range_text() in line, line
    assert not out.exists()


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.choices], ids=lambda s: s.name)
def test_unknown_choice_lists_the_allowed(s):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{s.name: "no-such-thing"}).validate()
    msg = str(e.value)
    assert s.name in msg and "'no-such-thing'" in msg and all(c in msg for c in s.choice_list()), msg


@pytest.mark.parametrize("name, value, needle", [
    ("prune_epochs", 2.5, "prune_epochs must be an integer >= 1, got 2.5"),
    ("seed", True, "seed must be an integer in [0, 2147483647], got True"),
    ("threads", 0, "threads must be >= 1 or unset, got 0"),
    ("budget", math.nan, "budget must be a finite number in (0, 1], got nan"),
    ("lr", "fast", "lr must be a finite number > 0, got 'fast'"),
    ("kd", 1, "kd must be true or false, got 1"),
    ("model", 8, "model must be text, got 8"),
    ("batch_size", None, "batch_size must be set, got None"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("teacher", "", "teacher must be 'default', 'none' or a path"),
])
def test_type_and_rule_messages(name, value, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{name: value}).validate()
    assert needle in str(e.value)


def test_cross_setting_rules():
    assert len(RULES) == 7
    with pytest.raises(ConfigError, match="barrier start a"):  # a <= 0: the barrier never switches off
        TrainConfig(budget=1e-4).validate()
    TrainConfig(budget=1e-4, margin=1e-5).validate()
    with pytest.raises(ConfigError, match="gate_init must keep every gate open"):
        TrainConfig(gate_init=-5.0).validate()
    with pytest.raises(ConfigError, match="gate_init"):  # the threshold follows gamma and zeta
        TrainConfig(gate_init=-2.0, gamma=-0.5, zeta=1.01).validate()
    TrainConfig(gate_init=-2.0).validate()
    with pytest.raises(ConfigError, match="above the log alpha ceiling"):  # gates could not close within L steps
        TrainConfig(gate_init=6.0).validate()
    TrainConfig(device="cuda:1", schedule_k=3.0, train_limit=1, threads=1).validate()


@pytest.mark.parametrize("changes, needle", [
    ({"method": "l0", "budget": 0.125}, "method 'l0' does not enforce a budget (budget 0.125)"),
    ({"method": "magnitude", "schedule": "exp", "barrier_cap": 1e3},
     "method 'magnitude' ignores schedule 'exp', barrier_cap 1000.0: only bar uses them"),
    ({"method": "magnitude", "lam": 1e-4}, "ignores lam 0.0001: only bar and l0 use it"),
    ({"mac_ratio": 0.125}, "method 'bar' ignores mac_ratio 0.125: only magnitude uses it"),
])
def test_a_setting_another_method_owns_is_refused_not_ignored(changes, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**changes).validate()
    assert needle in str(e.value) and "\n" not in str(e.value)
    TrainConfig(**{k: v for k, v in changes.items() if k != "method"} | {"method": "bar"}
                if "mac_ratio" not in changes else {"method": "magnitude", **changes}).validate()


def test_a_resumed_run_from_before_the_method_settings_keeps_its_earlier_values():
    data = TrainConfig(method="l0").to_dict()
    for name in ("barrier_lead", "wall_restart", "mac_ratio", "importance"):
        data.pop(name)  # an l0 run written before these settings existed
    cfg = TrainConfig.from_file_dict(data)
    assert cfg.method == "l0" and cfg.barrier_lead is False, "its earlier value, not refused as ignored"


# ---- (d) the docs table

def test_docs_settings_md_is_up_to_date():
    committed = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == settings_markdown(), "run: python scripts/make_settings_doc.py"


def test_docs_table_has_a_row_per_setting():
    text = settings_markdown()
    for s in SETTINGS:
        assert f"| `{s.name}` | `{s.flag}`" in text, s.name
    for g in GROUPS:
        assert f"## {g}\n" in text


def test_docs_script_check(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_settings_doc", REPO / "scripts" / "make_settings_doc.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    target = tmp_path / "settings.md"
    assert script.main(["--check", "--out", str(target)]) == 1
    assert script.main(["--out", str(target)]) == 0 and target.read_text(encoding="utf-8") == settings_markdown()
    assert script.main(["--check", "--out", str(target)]) == 0


# ---- (e) one registry each for datasets and models

def test_list_datasets_shows_every_registry_entry(capsys):
    assert main(["list-datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in lines] == list(DATASETS)
    for line, row in zip(lines, describe_datasets()):
        assert row["description"] in line and ("available" if row["available"] else "not here") in line


def test_list_models_shows_every_registry_entry(capsys):
    assert main(["list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in lines] == list(MODELS)


def test_registry_entries_are_whole():
    for name in DATASETS:
        info = dataset_info(name)
        assert info.name == name and info.description and info.needs and callable(info.loader)
        assert info.root in ("unused", "optional", "required") and info.in_channels in (1, 3)
        assert isinstance(info.available(), bool)
        if info.classes is not None:
            assert len(info.classes) == info.num_classes
