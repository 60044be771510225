"""The history of one run as the views draw it: a live buffer fed by the trainer's records, and the
same snapshot rebuilt from a run folder.

Data flows one way: the trainer (in its own thread) pushes records → `LiveBuffer` (under a lock);
readers call `snapshot()` and get a `RunSnapshot` of copies, with the step history downsampled to a
few thousand points. A finished or CLI-written run folder becomes the same `RunSnapshot` through
`snapshot_from_run`, so every view replays a past run exactly as it drew it live.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .runs import METRIC_COLUMNS, RunData, load_run

DEFAULT_MAX_POINTS = 3000
# Step columns kept by the buffer: the metrics.csv columns (phase as a string) plus `t`, the wall
# clock (time.monotonic) at which the record arrived, with paused time taken out.
FLOAT_COLUMNS = tuple(c for c in METRIC_COLUMNS if c not in ("step", "phase", "epoch", "over_budget"))


# ------------------------------------------------------------------------------------------------
# What the views draw


@dataclass
class RunSnapshot:
    """A consistent copy of one run for drawing: live (from a LiveBuffer) or replayed (from a folder).

    steps: downsampled step columns as numpy arrays: step, epoch, phase (str), the METRIC_COLUMNS
        floats, over_budget (bool) and t (seconds of training wall time, live runs only; NaN on replay).
    over_budget_steps: every step index with V ≥ b (not downsampled; at most max_points, evenly chosen).
    phase_spans: (phase, first step, last step + 1) as the steps actually ran (extra prune steps included).
    epochs: one dict per epoch record, without the gate arrays; gates: (epoch, {layer: {log_alpha,
        prob_open, test_gate}}) in epoch order (epoch 0 = the network before pruning).
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
    version: int = 0                # grows with every record the buffer took in (cache key for views)

    @property
    def has_steps(self) -> bool:
        return self.n_steps > 0

    @property
    def v0(self) -> float | None:
        return self.layout.get("v0")

    @property
    def warnings(self) -> list[str]:
        return [e["message"] for e in self.events if e.get("kind") == "warning" and e.get("message")]


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
# Live buffer


class LiveBuffer:
    """Trainer subscriber: keeps every record of one run in memory, thread-safely.

    `__call__` runs in the training thread and does O(1) work per step record (appends to column
    lists); `snapshot()` runs in the reader's thread and returns copies taken under the lock."""

    def __init__(self, history: str | os.PathLike | None = None):
        self._lock = threading.Lock()
        # A continued run's folder: on its "start" record the buffer first loads what came before.
        self._history = Path(history) if history is not None else None
        self._start: dict | None = None
        self._cols: dict[str, list] = {c: [] for c in ("step", "epoch", "phase", "over_budget", "t", *FLOAT_COLUMNS)}
        self._over: list[int] = []
        self._spans: list[list] = []
        self._epochs: list[dict] = []
        self._gates: list[tuple[int, dict]] = []
        self._events: list[dict] = []
        self._end: dict | None = None
        self._status: str | None = None
        self._version = 0
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._t0 = time.monotonic()

    def __call__(self, record: dict) -> None:
        kind = record.get("kind")
        if kind == "start" and record.get("resumed_at") and self._history is not None:
            self._load_history(load_run(self._history))
        with self._lock:
            self._version += 1
            if kind == "step":
                self._add_step(record, t=time.monotonic() - self._t0 - self._paused_total)
            elif kind == "epoch":
                gates = record.get("gates") or {}
                for arrays in gates.values():
                    for arr in arrays.values():
                        arr.flags.writeable = False  # shared with readers without copying
                self._epochs.append({k: v for k, v in record.items() if k not in ("gates", "kind")})
                self._gates.append((int(record["epoch"]), gates))
            elif kind == "start":
                self._start = dict(record)
            elif kind == "status":
                self._status = record.get("state")
                now = time.monotonic()
                if record.get("state") == "paused":
                    self._paused_at = now
                elif self._paused_at is not None:
                    self._paused_total += now - self._paused_at
                    self._paused_at = None
                self._events.append(dict(record))
            elif kind in ("warning", "error"):
                self._events.append(dict(record))
            elif kind == "end":
                self._end = dict(record)

    def _load_history(self, run: RunData) -> None:
        """Fill the buffer with a continued run's earlier steps and epochs, as if it had seen them."""
        rows = run.metrics.to_dict("records")
        epochs = run.epochs.to_dict("records")
        with self._lock:
            for row in rows:
                step_record = {"kind": "step", **{c: row.get(c, math.nan) for c in METRIC_COLUMNS}}
                over = row.get("over_budget")
                step_record["over_budget"] = over is not None and over == over and bool(over)  # NaN: no
                self._add_step(step_record, t=float(row.get("time") or 0.0))
            for row, (epoch, gates) in zip(epochs, run.gates):
                self._epochs.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                     for k, v in row.items()})
                self._gates.append((int(epoch), gates))
            if self._cols["t"]:  # new steps continue the clock where the old ones stopped
                self._t0 = time.monotonic() - self._cols["t"][-1]
            self._version += 1

    def _add_step(self, record: dict, t: float) -> None:
        c = self._cols
        step = int(record["step"])
        c["step"].append(step)
        c["epoch"].append(int(record["epoch"]))
        c["phase"].append(record["phase"])
        c["over_budget"].append(bool(record["over_budget"]))
        c["t"].append(t)
        for name in FLOAT_COLUMNS:
            c[name].append(float(record[name]))
        if record["over_budget"]:
            self._over.append(step)
        if not self._spans or self._spans[-1][0] != record["phase"]:
            self._spans.append([record["phase"], step, step + 1])
        else:
            self._spans[-1][2] = step + 1

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def snapshot(self, state: str, max_points: int = DEFAULT_MAX_POINTS, source: str = "live",
                 run_dir: str | None = None, error: str | None = None) -> RunSnapshot:
        with self._lock:
            start = dict(self._start) if self._start else {}
            n = len(self._cols["step"])
            idx = downsample_indices(n, max_points)
            cols = {}
            for name, values in self._cols.items():
                if name == "phase":
                    cols[name] = np.array([values[i] for i in idx], dtype=object)
                else:
                    dtype = {"step": np.int64, "epoch": np.int64, "over_budget": bool}.get(name, np.float64)
                    cols[name] = np.fromiter((values[i] for i in idx), dtype=dtype, count=len(idx))
            over = np.asarray(self._over, dtype=np.int64)
            t_recent = np.asarray(self._cols["t"][-200:], dtype=np.float64)
            spans = [tuple(s) for s in self._spans]
            epochs = [dict(e) for e in self._epochs]
            gates = list(self._gates)
            events = [dict(e) for e in self._events]
            end = dict(self._end) if self._end else None
            version = self._version
            last_phase = self._cols["phase"][-1] if n else None
            last_epoch = self._cols["epoch"][-1] if n else None
        if len(over) > max_points:
            over = over[downsample_indices(len(over), max_points)]
        layout = {k: v for k, v in start.items() if k not in ("kind", "config")}
        summary = end.get("summary") if end else None
        if error is None:
            error = next((e["message"] for e in reversed(events) if e.get("kind") == "error"), None)
        n_done = (int(cols["step"][-1]) + 1) if n else int(start.get("resumed_at") or 0)
        progress = _progress(layout, n_done, last_phase, last_epoch, state, t_recent)
        return RunSnapshot(source=source, state=state, config=dict(start.get("config") or {}), layout=layout,
                           steps=cols, n_steps=n, over_budget_steps=over, phase_spans=spans, epochs=epochs,
                           gates=gates, events=events, summary=summary, error=error, progress=progress,
                           run_dir=run_dir, version=version)


# ------------------------------------------------------------------------------------------------
# Replay


def snapshot_from_run(run: RunData | str | os.PathLike, max_points: int = DEFAULT_MAX_POINTS) -> RunSnapshot:
    """A RunSnapshot of a run folder (finished, stopped, failed or still being written by the CLI)."""
    if not isinstance(run, RunData):
        run = load_run(run)
    m = run.metrics
    n = len(m)
    idx = downsample_indices(n, max_points)
    cols: dict[str, np.ndarray] = {}
    if n:
        sub = m.iloc[idx]
        cols["step"] = sub["step"].to_numpy(dtype=np.int64)
        cols["epoch"] = sub["epoch"].to_numpy(dtype=np.int64)
        cols["phase"] = sub["phase"].astype(str).to_numpy(dtype=object)
        cols["over_budget"] = sub["over_budget"].fillna(0).astype(int).to_numpy().astype(bool)
        for name in FLOAT_COLUMNS:  # a column an older run folder lacks reads as NaN
            cols[name] = (sub[name].to_numpy(dtype=np.float64, na_value=np.nan) if name in sub
                          else np.full(len(idx), np.nan))
        cols["t"] = cols["time"].copy()  # training seconds since the run started, as recorded
        over_mask = m["over_budget"].fillna(0).astype(int).to_numpy().astype(bool)
        over = m["step"].to_numpy(dtype=np.int64)[over_mask]
        phases = m["phase"].astype(str).to_numpy()
        step_all = m["step"].to_numpy(dtype=np.int64)
        change = np.flatnonzero(phases[1:] != phases[:-1]) + 1
        bounds = np.concatenate([[0], change, [n]])
        spans = [(str(phases[s]), int(step_all[s]), int(step_all[e - 1]) + 1) for s, e in zip(bounds[:-1], bounds[1:])]
    else:
        cols = {"step": np.zeros(0, np.int64), "epoch": np.zeros(0, np.int64), "phase": np.zeros(0, object),
                "over_budget": np.zeros(0, bool), "t": np.zeros(0), **{c: np.zeros(0) for c in FLOAT_COLUMNS}}
        over, spans = np.zeros(0, np.int64), []
    if len(over) > max_points:
        over = over[downsample_indices(len(over), max_points)]
    epochs = []
    for row in run.epochs.to_dict("records"):
        epochs.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    summary = run.summary
    errors = [e.get("message") for e in run.events if e.get("kind") == "error"]
    state = summary.get("state") if summary else "unfinished"
    error = (summary or {}).get("error") or (errors[-1] if errors else None)
    layout = dict(run.layout)
    n_done = int(m["step"].iloc[-1]) + 1 if n else 0
    progress = _progress(layout, n_done, cols["phase"][-1] if n else None,
                         int(cols["epoch"][-1]) if n else None, state, None)
    return RunSnapshot(source=str(run.path), state=state, config=dict(run.config), layout=layout, steps=cols,
                       n_steps=n, over_budget_steps=over, phase_spans=spans, epochs=epochs, gates=list(run.gates),
                       events=list(run.events), summary=summary, error=error, progress=progress,
                       run_dir=str(run.path), version=n)
