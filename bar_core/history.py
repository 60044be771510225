"""The history of one run as the views draw it, built one way for live, continued and replayed runs.

`History` takes the trainer's typed records (bar_core/records.py) and builds a `RunSnapshot`. The
live buffer feeds it from the trainer (in its own thread, under a lock); a run folder is read back
into the same records (`runs.read_records`) for replay (`snapshot_from_run`) and for the earlier
steps of a continued run, so every view replays a past run exactly as it drew it live. Readers get
copies, with the step history downsampled to a few thousand points.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

import numpy as np

from .records import METRIC_COLUMNS, EndRecord, EpochRecord, Record, StartRecord, StepRecord, freeze_gates
from .runs import RunData, load_run, read_records

DEFAULT_MAX_POINTS = 3000
# Step columns of a snapshot: the metrics.csv columns (phase as a string) plus `t`, the step's clock.
FLOAT_COLUMNS = tuple(c for c in METRIC_COLUMNS if c not in ("step", "phase", "epoch", "over_budget"))
_FLOATS = attrgetter(*FLOAT_COLUMNS)


# ------------------------------------------------------------------------------------------------
# What the views draw


@dataclass
class RunSnapshot:
    """A consistent copy of one run for drawing: live (from a LiveBuffer) or replayed (from a folder).

    steps: downsampled step columns as numpy arrays: step, epoch, phase (str), the METRIC_COLUMNS
        floats, over_budget (bool) and t, seconds of training wall time: live, the buffer's clock when
        the step arrived (pauses taken out); replayed (and a continued run's earlier steps), `time`.
    over_budget_steps: every step index with V ≥ b (not downsampled; at most max_points, evenly chosen).
    phase_spans: (phase, first step, last step + 1) as the steps actually ran (extra prune steps included).
    epochs: one dict per epoch record (the epochs.csv row, a missing value as None), without the gate
        arrays; gates: (epoch, {layer: {log_alpha, prob_open, test_gate}}) in epoch order (epoch 0 =
        the network before pruning), read-only arrays.
    layout: the layout.json object; events: the events.jsonl objects.
    """
    source: str                     # "live" or the run folder path
    state: str                      # starting | running | paused | stopping | done | stopped | error | unfinished
    config: dict = field(default_factory=dict)
    layout: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    n_steps: int = 0
    over_budget_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    phase_spans: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    gates: list = field(default_factory=list)
    events: list = field(default_factory=list)
    summary: dict | None = None
    error: str | None = None
    progress: dict = field(default_factory=dict)
    run_dir: str | None = None
    version: int = 0                # live: grows with every record the buffer took in (cache key for
                                    # views); replayed: n_steps
    problems: list = field(default_factory=list)  # replayed: what the folder's damaged files left out

    @property
    def has_steps(self) -> bool:
        return self.n_steps > 0

    @property
    def v0(self) -> float | None:
        return self.layout.get("v0")

    @property
    def warnings(self) -> list[str]:
        return [e["message"] for e in self.events if e.get("kind") == "warning" and e.get("message")]

    @property
    def notes(self) -> list[str]:
        """What the run said along the way that is not a warning (e.g. what one-shot pruning removed)."""
        return [e["message"] for e in self.events if e.get("kind") == "info" and e.get("message")]


def downsample_indices(n: int, max_points: int) -> np.ndarray:
    """Evenly spaced indices into a history of n points, at most max_points, first and last included."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    idx = np.linspace(0, n - 1, max(max_points, 2)).round().astype(np.int64)
    return np.unique(idx)


def _progress(layout: dict, n_done: int, phase: str | None, epoch: int | None, state: str,
              step_times: np.ndarray | None) -> dict:
    total = int(layout.get("total_steps") or 0)
    fraction = min(n_done / total, 1.0) if total else 0.0
    eta = None
    if step_times is not None and len(step_times) >= 5 and state in ("running", "starting") and total:
        window = step_times[-200:]
        dt = window[-1] - window[0]
        if dt > 0:
            rate = (len(window) - 1) / dt
            eta = max(total - n_done, 0) / rate if rate > 0 else None
    if state == "done":
        fraction, eta = 1.0, 0.0
    return {"step": n_done, "total_steps": total, "fraction": fraction, "phase": phase, "epoch": epoch,
            "eta_seconds": eta}


# ------------------------------------------------------------------------------------------------
# The one history builder


class History:
    """A run's records, as taken in, and the `RunSnapshot` they make. Not thread-safe on its own
    (LiveBuffer holds a lock around it). `add` does O(1) work per record."""

    def __init__(self):
        self.start: StartRecord | None = None
        self.end: EndRecord | None = None
        self.count = 0                          # records taken in
        self._steps: list[StepRecord] = []
        self._t: list[float] = []               # each step's clock (RunSnapshot.steps["t"])
        self._over: list[int] = []
        self._spans: list[list] = []
        self._epochs: list[EpochRecord] = []
        self._gates: list[tuple[int, dict]] = []
        self._events: list[dict] = []

    def add(self, record: Record, t: float | None = None) -> None:
        """Take in one record; `t` is a step's clock (default: the time it records)."""
        self.count += 1
        kind = record.kind
        if kind == "step":
            self._steps.append(record)
            self._t.append(record.time if t is None else t)
            step, phase = record.step, record.phase
            if record.over_budget:
                self._over.append(step)
            spans = self._spans
            if spans and spans[-1][0] == phase:
                spans[-1][2] = step + 1
            else:
                spans.append([phase, step, step + 1])
        elif kind == "epoch":
            self._epochs.append(record)
            if record.gates:  # an epoch whose gates.npz entry is not written yet has none
                self._gates.append((record.epoch, freeze_gates(record.gates)))
        elif kind in ("status", "info", "warning", "error"):
            self._events.append(record.to_event())
        elif kind == "start":
            self.start = record
        elif kind == "end":
            self.end = record
        # a phase record adds nothing: phase spans come from the steps as they ran

    @property
    def n_steps(self) -> int:
        return len(self._steps)

    @property
    def last_t(self) -> float | None:
        return self._t[-1] if self._t else None

    def snapshot(self, state: str | None = None, max_points: int = DEFAULT_MAX_POINTS, source: str = "live",
                 run_dir: str | None = None, error: str | None = None, version: int | None = None) -> RunSnapshot:
        """A RunSnapshot of copies. `state` defaults to the end record's (else "unfinished"), `error`
        to the summary's or the last error event's, `version` to the record count."""
        steps, n = self._steps, len(self._steps)
        idx = downsample_indices(n, max_points)
        sub = steps if len(idx) == n else [steps[i] for i in idx]
        times = self._t if len(idx) == n else [self._t[i] for i in idx]
        k = len(sub)
        cols = {"step": np.fromiter((r.step for r in sub), np.int64, k),
                "epoch": np.fromiter((r.epoch for r in sub), np.int64, k),
                "phase": np.array([r.phase for r in sub], dtype=object),
                "over_budget": np.fromiter((r.over_budget for r in sub), bool, k),
                "t": np.array(times, dtype=np.float64)}
        floats = np.array([_FLOATS(r) for r in sub], dtype=np.float64).reshape(k, len(FLOAT_COLUMNS)).T.copy()
        cols.update(zip(FLOAT_COLUMNS, floats))
        over = np.asarray(self._over, dtype=np.int64)
        if len(over) > max_points:
            over = over[downsample_indices(len(over), max_points)]
        start, end = self.start, self.end
        layout = start.layout() if start else {}
        summary = dict(end.summary) if end and end.summary is not None else None
        if state is None:
            state = end.state if end else "unfinished"
        events = [dict(e) for e in self._events]
        if error is None:
            error = (summary or {}).get("error") or (None if state == "done" else _last_error(events))
        last = steps[-1] if n else None
        n_done = last.step + 1 if last else (start.resumed_at if start else 0)
        progress = _progress(layout, n_done, last.phase if last else None, last.epoch if last else None, state,
                             np.asarray(self._t[-200:], dtype=np.float64))
        return RunSnapshot(source=source, state=state, config=dict(start.config) if start else {}, layout=layout,
                           steps=cols, n_steps=n, over_budget_steps=over, phase_spans=[tuple(s) for s in self._spans],
                           epochs=[e.row() for e in self._epochs], gates=list(self._gates), events=events,
                           summary=summary, error=error, progress=progress, run_dir=run_dir,
                           version=self.count if version is None else version)


# ------------------------------------------------------------------------------------------------
# Live buffer


class LiveBuffer:
    """Trainer subscriber: keeps one run's History in memory, thread-safely.

    `__call__` runs in the training thread (O(1) work per step record); `snapshot()` runs in the
    reader's thread and returns copies taken under the lock. `history`: a continued run's folder,
    whose earlier records the buffer takes in first, on the run's "start" record."""

    def __init__(self, history: str | os.PathLike | None = None):
        self._lock = threading.Lock()
        self._folder = Path(history) if history is not None else None
        self._history = History()
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._t0 = time.monotonic()

    def __call__(self, record: Record) -> None:
        if record.kind == "step":
            with self._lock:
                self._history.add(record, t=time.monotonic() - self._t0 - self._paused_total)
            return
        earlier = None
        if record.kind == "start" and record.resumed_at and self._folder is not None:
            # the run folder (the trainer's first subscriber) already dropped what came after the checkpoint
            earlier = [r for r in read_records(self._folder) if r.kind != "end"]
        with self._lock:
            if earlier is not None:
                for r in earlier:
                    self._history.add(r)
                if self._history.last_t is not None:  # new steps continue the clock where the old ones stopped
                    self._t0 = time.monotonic() - self._history.last_t
            if record.kind == "status":
                now = time.monotonic()
                if record.state == "paused":
                    self._paused_at = now
                elif self._paused_at is not None:
                    self._paused_total += now - self._paused_at
                    self._paused_at = None
            self._history.add(record)

    @property
    def version(self) -> int:
        with self._lock:
            return self._history.count

    def snapshot(self, state: str, max_points: int = DEFAULT_MAX_POINTS, source: str = "live",
                 run_dir: str | None = None, error: str | None = None) -> RunSnapshot:
        with self._lock:
            return self._history.snapshot(state, max_points, source=source, run_dir=run_dir, error=error)


# ------------------------------------------------------------------------------------------------
# Replay


def snapshot_from_run(run: RunData | str | os.PathLike, max_points: int = DEFAULT_MAX_POINTS) -> RunSnapshot:
    """A RunSnapshot of a run folder (finished, stopped, failed or still being written by the CLI)."""
    if not isinstance(run, RunData):
        run = load_run(run)
    history = History()
    for record in run.records():
        history.add(record)
    snap = history.snapshot(max_points=max_points, source=str(run.path), run_dir=str(run.path),
                            version=history.n_steps)
    snap.problems = list(run.problems)
    return snap


def _last_error(events: list[dict]) -> str | None:
    """The last error event's message, unless the run was continued after it (the error is history)."""
    for e in reversed(events):
        if e.get("kind") == "error":
            return e.get("message")
        if e.get("kind") == "status" and e.get("state") == "continued":
            return None
    return None
