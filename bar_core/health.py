"""Whether a run's outcome can be trusted: one-line findings, empty when the run is healthy.

A run can "meet" its budget and still be useless: a network pruned to chance-level accuracy, or one
whose volume fell far below the budget it was meant to stop at (the barrier did not hold). Such runs
are flagged in summary.json (`health`), the CLI summary and the app, and never called a success.
"""
from __future__ import annotations

import math

CHANCE_MARGIN = 1.5     # accuracy at most 1.5x chance (1/classes) counts as chance level
FAR_BELOW = 0.5         # V/V0 below half the budget: pruned far past it
LARGE_DROP = 0.10       # 10 accuracy points below the teacher


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return None if math.isnan(x) else float(x)


def health_findings(summary: dict, num_classes: int | None = None) -> list[str]:
    """The findings of a finished (or stopped) run's summary; `num_classes` gives the chance level.
    Each is one line that says what was measured and what it means. A run that ended in an error has
    no outcome to judge: none."""
    if summary.get("state") == "error":
        return []
    out = []
    acc, teacher = _num(summary.get("pruned_accuracy")), _num(summary.get("teacher_accuracy"))
    ratio, budget = _num(summary.get("volume_ratio")), _num(summary.get("budget"))
    if acc is not None and num_classes and num_classes > 1 and acc <= CHANCE_MARGIN / num_classes:
        out.append(f"accuracy {100 * acc:.2f}% is chance level for {num_classes} classes "
                   f"({100 / num_classes:.0f}%): the pruned network has collapsed")
    if ratio is not None and budget and ratio < FAR_BELOW * budget:
        out.append(f"V/V0 {ratio:.4f} ended far below the budget {budget:g} ({ratio / budget:.2f}x of it): "
                   f"the barrier did not hold the volume at the budget")
    if acc is not None and teacher is not None and teacher - acc > LARGE_DROP and not out:
        out.append(f"accuracy {100 * acc:.2f}% is {100 * (teacher - acc):.1f} points below the teacher's "
                   f"{100 * teacher:.2f}%")
    return out


def is_healthy(summary: dict, num_classes: int | None = None) -> bool:
    return not health_findings(summary, num_classes)
