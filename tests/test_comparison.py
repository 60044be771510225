"""The pure builders of bar_core/comparison.py: real values in, checked values out."""
import math

import numpy as np

from bar_core.comparison import (
    accuracy_overlay_figure,
    gates_figure,
    progress_percent,
    settings_diff,
    volume_overlay_figure,
)
from bar_core.history import RunSnapshot
from tests.test_plots import validated


def snap(budget, ratios, total_steps, accs):
    steps = {"step": np.arange(len(ratios), dtype=float), "volume_ratio": np.asarray(ratios, dtype=float),
             "loss": np.linspace(2, 1, len(ratios))}
    epochs = [{"epoch": i, "test_acc": a} for i, a in enumerate(accs)]
    gates = [(len(accs) - 1, {"l1": {"prob_open": np.array([0.1, 0.9, 0.95])}})]
    return RunSnapshot(source="x", state="done", config={"budget": budget}, steps=steps, n_steps=len(ratios),
                       layout={"total_steps": total_steps, "layers": [{"name": "l1"}]}, epochs=epochs, gates=gates)


def test_progress_is_a_share_of_the_planned_steps_and_runs_past_it():
    s = snap(0.5, [1, 0.8, 0.6, 0.5, 0.5], total_steps=4, accs=[0.9])
    assert progress_percent(s).tolist() == [0, 25, 50, 75, 100]


def test_volume_overlay_has_a_trace_and_a_budget_line_per_run():
    a, b = snap(0.5, [1, 0.7, 0.5], 3, [0.9, 0.8]), snap(0.25, [1, 0.5, 0.3, 0.25], 3, [0.9, 0.7])
    fig = volume_overlay_figure(["a", "b"], [a, b])
    validated(fig)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[1].y) == [1, 0.5, 0.3, 0.25]
    assert sorted(s.y0 for s in fig.layout.shapes) == [0.25, 0.5]
    assert fig.data[0].line.color != fig.data[1].line.color
    acc = accuracy_overlay_figure(["a", "b"], [a, b])
    validated(acc)
    assert list(acc.data[1].x) == [0, 1] and list(acc.data[1].y) == [0.9, 0.7]


def test_gates_figure_draws_the_last_epoch_or_nothing():
    fig = gates_figure("a", snap(0.5, [1], 1, [0.9, 0.8]))
    assert "epoch 1" in fig.layout.title.text
    empty = snap(0.5, [1], 1, [0.9])
    empty.gates = []
    assert gates_figure("a", empty) is None


def test_settings_diff_keeps_only_what_differs():
    rows = settings_diff({"a": {"budget": 0.5, "seed": 0, "lam": 2e-6, "extra": {"x": 1}, "nan": math.nan},
                          "b": {"budget": 0.25, "seed": 0, "lam": 2e-6, "extra": {"x": 2}, "nan": math.nan},
                          "c": {"budget": 0.25, "seed": 0, "lam": 2e-6, "new": True, "nan": math.nan}})
    assert rows == [{"setting": "budget", "a": 0.5, "b": 0.25, "c": 0.25},
                    {"setting": "new", "a": None, "b": None, "c": True}]
