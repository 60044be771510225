"""bench/bench_preset.py in-process on the smoke preset: every phase measured, and the projection is
the preset's own epochs at the measured speeds."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_preset", REPO / "bench" / "bench_preset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_smoke_preset_capped_and_projected(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "preset.json"
    assert bench.main(["--preset", "smoke", "--steps", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["phases"]) == ["pretrain", "prune", "finetune"]  # teacher 'none': it pretrains first
    for name, m in result["phases"].items():
        assert m["steps"] == 4 and m["median_images_per_s"] > 0 and m["wall_images_per_s"] > 0, name
        assert m["evaluation_s"] > 0, name
    full = result["config"]
    assert full["max_steps_per_epoch"] == 10 and full["prune_epochs"] == 2  # the preset's, not the capped run's
    steps = result["steps_per_epoch"]
    assert steps == min(2_000 // full["batch_size"], full["max_steps_per_epoch"])  # the preset caps its epochs
    prune = result["phases"]["prune"]
    want = full["prune_epochs"] * (steps * full["batch_size"] / prune["wall_images_per_s"] + prune["evaluation_s"])
    assert result["projected"]["prune"]["seconds"] == pytest.approx(want)
    assert result["projected_seconds"] == pytest.approx(sum(p["seconds"] for p in result["projected"].values()))
    assert "projected full preset" in capsys.readouterr().out
