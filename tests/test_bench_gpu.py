"""bench/bench_gpu.py in-process on CPU at a tiny size: one JSON row per mode, numbers that add up,
and a failing mode recorded as its row's error instead of stopping the benchmark."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--models", "resnet8", "--batch", "8", "--steps", "2", "--warmup", "1", "--rounds", "1",
        "--threads", "1"]
KEYS = {"model", "mode", "precision", "compiled", "channels_last", "batch", "dense_images_per_s",
        "gated_images_per_s", "ratio", "warmup_s", "error"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(bench, tmp_path, *extra: str) -> dict:
    out = tmp_path / "r.json"
    bench.main([*TINY, "--json", str(out), *extra])
    return json.loads(out.read_text())


def test_eager_and_compiled_rows_have_numbers(bench, tmp_path, capsys):
    result = run(bench, tmp_path, "--modes", "eager-fp32", "compile-fp32", "--compile-backend", "aot_eager")
    assert result["machine"]["device"] == "cpu" and result["machine"]["torch"]
    rows = result["rows"]
    assert [r["mode"] for r in rows] == ["eager-fp32", "compile-fp32"]
    for row in rows:
        assert KEYS <= row.keys()
        assert row["error"] is None, row["error"]
        assert row["model"] == "resnet8" and row["batch"] == 8 and row["precision"] == "fp32"
        assert row["channels_last"] is True
        assert row["dense_images_per_s"] > 0 and row["gated_images_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["gated_images_per_s"] / row["dense_images_per_s"])
        assert row["warmup_s"] >= 0
    assert [r["compiled"] for r in rows] == [False, True]
    printed = capsys.readouterr().out
    assert "best ratio for resnet8:" in printed and "torch" in printed.splitlines()[0]


def test_a_failing_mode_is_recorded_not_raised(bench, tmp_path):
    result = run(bench, tmp_path, "--modes", "eager-fp32", "compile-fp32", "--compile-backend", "no_such_backend",
                 "--no-channels-last")
    eager, compiled = result["rows"]
    assert eager["error"] is None and eager["ratio"] > 0 and eager["channels_last"] is False
    assert compiled["mode"] == "compile-fp32" and compiled["error"]
    assert compiled["ratio"] is None and compiled["gated_images_per_s"] is None
