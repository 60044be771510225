"""BAR against its baselines: the rows `bench/bench_methods.py` writes and the figures drawn from them.

One row per run (docs/results/methods.csv, docs/results/lambda.csv): method, model, dataset, seed,
budget, lam, volume_ratio, mac_ratio, teacher_accuracy, accuracy, wall_seconds and a few derived
columns. Pure builders: rows in, plotly figures out; the pruning factor is drawn on a log₂ axis, as
the paper does.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go

from .losses import METHOD_TITLES
from .plots import _base_layout, _figure, _t

COLUMNS = ("method", "model", "dataset", "seed", "budget", "lam", "target_mac_ratio", "volume_ratio", "mac_ratio",
           "volume_factor", "mac_factor", "teacher_accuracy", "accuracy", "accuracy_drop", "steps_over_budget",
           "epochs", "wall_seconds", "run")
METHOD_COLORS = {"bar": "#1f77b4", "l0": "#d62728", "magnitude": "#2ca02c"}
FACTORS = {"volume": ("volume_factor", "pruning factor by activation volume, V0 / V"),
           "macs": ("mac_factor", "pruning factor by MACs, dense ÷ pruned")}


def row_from_summary(summary: Mapping, config: Mapping, run: str) -> dict:
    """A results row from a run's summary.json and config.json."""
    method = summary.get("method") or config.get("method", "bar")
    vr, mr = summary.get("volume_ratio"), summary.get("mac_ratio")
    teacher, acc = summary.get("teacher_accuracy"), summary.get("pruned_accuracy")
    return {
        "method": method, "model": summary.get("model"), "dataset": summary.get("dataset"), "seed": config.get("seed"),
        "budget": config.get("budget") if method == "bar" else None,
        "lam": config.get("lam") if method in ("bar", "l0") else None,
        "target_mac_ratio": summary.get("target_mac_ratio"),
        "volume_ratio": vr, "mac_ratio": mr,
        "volume_factor": 1.0 / vr if vr else None, "mac_factor": 1.0 / mr if mr else None,
        "teacher_accuracy": teacher, "accuracy": acc,
        "accuracy_drop": teacher - acc if teacher is not None and acc is not None else None,
        "steps_over_budget": summary.get("steps_over_budget"),
        "epochs": (config.get("prune_epochs") or 0) + (config.get("finetune_epochs") or 0),
        "wall_seconds": summary.get("wall_seconds"), "run": run,
    }


SHIPPED = Path(__file__).resolve().parent / "assets" / "results"  # copies of docs/results/*.csv for the app


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a results CSV (numbers as floats, empty cells as None); [] when it cannot be read."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    out = []
    for r in rows:
        row = {}
        for k, v in r.items():
            if v in ("", None):
                row[k] = None
            elif k in ("method", "model", "dataset", "run"):
                row[k] = v
            elif v.lstrip("-").isdigit():
                row[k] = int(v)  # seed, epochs, steps: written back as they were read
            else:
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
        out.append(row)
    return out


def shipped_rows(name: str) -> list[dict]:
    """`methods` or `lambda`: the measured table shipped with the package."""
    return read_rows(SHIPPED / f"{name}.csv")


def _number(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _setting(r: Mapping) -> tuple:
    """What a run varied apart from its seed: its run name without the "-s<seed>" the bench ends it
    with (a magnitude run's MAC target follows its own BAR run, so it differs from seed to seed)."""
    run = r.get("run") or ""
    stem = run.rsplit("-s", 1)[0] if run.rsplit("-s", 1)[-1].isdigit() else run
    return (r.get("method"), stem) if stem else (r.get("method"), r.get("budget"), r.get("lam"), r.get("target_mac_ratio"))


def _seed_means(rows: Sequence[Mapping], method: str, keys: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
    """The runs of `method` as (mean over seeds of each key) per setting, sorted by the first key,
    and every run's own values; runs missing a value (a network pruned to nothing has no factor) left out."""
    groups: dict[tuple, list[tuple]] = {}
    for r in rows:
        if r.get("method") == method:
            values = tuple(_number(r.get(k)) for k in keys)
            if None not in values:
                groups.setdefault(_setting(r), []).append(values)
    means = sorted(tuple(sum(col) / len(col) for col in zip(*runs)) for runs in groups.values())
    return means, [v for runs in groups.values() for v in runs]


def accuracy_figure(rows: Sequence[Mapping], by: str = "volume", title: str | None = None) -> go.Figure:
    """Accuracy against pruning factor (log₂ axis), one line per method (mean over seeds at each
    budget / λ / MAC target, the seeds as dots), the dense teacher as a dashed line."""
    key, x_title = FACTORS[by]
    traces = []
    for method in METHOD_COLORS:
        means, runs = _seed_means(rows, method, (key, "accuracy"))
        if not means:
            continue
        name, color = METHOD_TITLES.get(method, method), METHOD_COLORS[method]
        traces.append(_t("scatter", x=[x for x, _ in means], y=[100 * y for _, y in means], mode="lines+markers",
                         name=name if len(runs) == len(means) else f"{name} (mean over seeds)",
                         line=dict(color=color, width=2)))
        if len(runs) > len(means):  # more than one seed somewhere: each run as a dot
            traces.append(_t("scatter", x=[x for x, _ in runs], y=[100 * y for _, y in runs], mode="markers",
                             name=f"{name}, each seed", marker=dict(color=color, size=6, opacity=0.45)))
    teachers = [t for t in (_number(r.get("teacher_accuracy")) for r in rows) if t is not None]
    layout = _base_layout(title or f"Accuracy against pruning factor ({by})", None, height=440,
                          xaxis=dict(title=x_title, type="log", dtick=math.log10(2), tickformat="~g"),
                          yaxis=dict(title="test accuracy (%)"))
    fig = _figure(traces, layout)
    if teachers:
        t = 100 * sum(teachers) / len(teachers)
        fig.add_shape(type="line", xref="x domain", x0=0, x1=1, y0=t, y1=t, line=dict(color="#444", dash="dash"))
        fig.add_annotation(xref="x domain", x=0.01, y=t, yanchor="bottom", showarrow=False,
                           text=f"dense teacher {t:.2f}%")
    return fig


def lambda_figure(rows: Sequence[Mapping], budget: float | None = None) -> go.Figure:
    """Final V/V0 against λ (log axis) for BAR and L0: BAR lands at its budget for every λ, L0 wherever
    λ sends it; the budget B as a dotted line."""
    traces = []
    for method in ("bar", "l0"):
        pts, _ = _seed_means(rows, method, ("lam", "volume_ratio", "accuracy"))
        if pts:
            traces.append(_t("scatter", x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                             name=METHOD_TITLES[method], line=dict(color=METHOD_COLORS[method], width=2),
                             customdata=[100 * p[2] for p in pts],
                             hovertemplate="λ %{x:.0e}: V/V0 %{y:.4f}, accuracy %{customdata:.2f}%<extra></extra>"))
    layout = _base_layout("Where the volume ends, against λ", None, height=420,
                          xaxis=dict(title="λ", type="log", exponentformat="power"),
                          yaxis=dict(title="final V / V0", type="log", dtick=math.log10(2), tickformat="~g"))
    fig = _figure(traces, layout)
    if budget:
        fig.add_shape(type="line", xref="x domain", x0=0, x1=1, y0=budget, y1=budget,
                      line=dict(color=METHOD_COLORS["bar"], dash="dot"))
        fig.add_annotation(xref="x domain", x=0.99, xanchor="right", y=math.log10(budget), yanchor="bottom",
                           showarrow=False, text=f"budget B = 1/{round(1 / budget)}")
    return fig


def _pct(x) -> str:
    x = _number(x)
    return "—" if x is None else f"{100 * x:.2f}%"


def _factor(x) -> str:
    x = _number(x)
    return "—" if x is None else f"{x:.2f}×"


def _run_key(r: Mapping) -> tuple:
    budget = _number(r.get("budget"))
    target = _number(r.get("target_mac_ratio"))
    return ({"bar": 0, "magnitude": 1, "l0": 2}.get(r.get("method"), 3), -(budget or target or 0),
            _number(r.get("lam")) or 0, _number(r.get("seed")) or 0)


def methods_markdown(rows: Sequence[Mapping]) -> str:
    """The methods table as README shows it: one line per run."""
    lines = ["| method | B | λ | seed | V/V0 | pruning factor (volume) | MAC ratio | pruning factor (MACs) | accuracy | "
             "drop vs dense (points) | wall time |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=_run_key):
        budget, lam = _number(r.get("budget")), _number(r.get("lam"))
        drop = _number(r.get("accuracy_drop"))
        wall = _number(r.get("wall_seconds"))
        lines.append(f"| {METHOD_TITLES.get(r.get('method'), r.get('method'))} | "
                     f"{'—' if budget is None else f'1/{round(1 / budget)}'} | {'—' if lam is None else f'{lam:.0e}'} | {r.get('seed')} | "
                     f"{_number(r.get('volume_ratio')) or 0:.4f} | {_factor(r.get('volume_factor'))} | "
                     f"{_number(r.get('mac_ratio')) or 0:.4f} | {_factor(r.get('mac_factor'))} | {_pct(r.get('accuracy'))} | "
                     f"{'—' if drop is None else f'{100 * drop:.2f}'} | {'—' if wall is None else f'{wall:.0f} s'} |")
    return "\n".join(lines)


def lambda_markdown(rows: Sequence[Mapping]) -> str:
    """The λ-sensitivity table: where V/V0 ends and the accuracy, per method and λ."""
    lines = ["| method | λ | V/V0 | accuracy |", "|---|---|---|---|"]
    for r in sorted((r for r in rows if r.get("method") in ("bar", "l0")),
                    key=lambda r: (r.get("method") != "bar", _number(r.get("lam")) or 0)):
        lines.append(f"| {METHOD_TITLES[r['method']]}{' (B = 1/' + str(round(1 / r['budget'])) + ')' if r.get('budget') else ''} "
                     f"| {_number(r.get('lam')):.0e} | {_number(r.get('volume_ratio')) or 0:.4f} | {_pct(r.get('accuracy'))} |")
    return "\n".join(lines)
