"""The runs folder as a table: one row per run folder (the app's, the CLI's and those inside sweeps),
and the housekeeping a table offers (rename, delete), none of which can reach outside the folder.

A row is read from two small files, config.json and summary.json, so hundreds of runs list in a
fraction of a second (bench/bench_catalog.py measures it). A folder that holds a run but cannot be
read is still a row, in state "damaged", with the reason; a folder that holds no run is not listed.

States: done, stopped, error (from summary.json); running (no summary yet, and the process named in
running.json is alive on this machine); unfinished (no summary and nothing running: the process
was killed, or the run was copied here mid-way); damaged.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .config import SETTING
from .health import health_findings
from .runs import RUNNING_MARKER, RunFolderError, holds_run, safe_run_dir

SWEEP_FILE = "sweep.json"
STATES = ("running", "done", "stopped", "error", "unfinished", "damaged")


@dataclass(frozen=True)
class RunRow:
    """One run folder, as the runs table shows it. Numbers are None where the run has none (yet)."""
    name: str                      # relative to the runs folder: "demo", or "sweep1/b0.125-s0" inside a sweep
    state: str                     # one of STATES
    date: str                      # when the run was created, local time, "YYYY-MM-DD HH:MM"
    model: str | None = None
    dataset: str | None = None
    method: str | None = None
    budget: float | None = None
    pruning_factor: float | None = None  # 1/B
    lam: float | None = None
    schedule: str | None = None
    seed: int | None = None
    volume_ratio: float | None = None    # V/V0 reached
    teacher_accuracy: float | None = None
    pruned_accuracy: float | None = None
    accuracy_drop: float | None = None   # teacher - pruned, as a fraction
    steps_over_budget: int | None = None
    steps: int | None = None
    wall_seconds: float | None = None
    health: str | None = None            # "ok", or the run's health findings (bar_core/health.py)
    sweep: str | None = None             # the sweep folder's name, for runs inside one
    problem: str | None = None           # why a damaged run could not be read
    path: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunRow))


def _number(value):
    """A summary's number, or None (missing, NaN, or not a number at all)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def _read_object(path: Path) -> dict | None:
    """A JSON object from a file, None if the file is absent; ValueError if it is not an object."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name} holds a {type(obj).__name__}, not an object")
    return obj


def running_process(path: Path) -> dict | None:
    """running.json's {pid, host, started} if the process that wrote it is alive on this machine."""
    try:
        info = json.loads((path / RUNNING_MARKER).read_text())
        pid, host = int(info["pid"]), info["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return info  # another machine's process: trust the marker (a shared runs folder)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    return info


def run_row(path: str | os.PathLike, name: str | None = None, sweep: str | None = None) -> RunRow:
    """The row of one run folder; never raises for what the folder holds (a damaged run is a row)."""
    path = Path(path)
    name = name or path.name
    try:
        created = (path / "config.json").stat().st_mtime
    except OSError:
        created = path.stat().st_mtime
    base = {"name": name, "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)), "sweep": sweep,
            "path": str(path)}
    try:
        config = _read_object(path / "config.json") or {}
        summary = _read_object(path / "summary.json")
    except (OSError, ValueError) as exc:
        return RunRow(state="damaged", problem=str(exc), **base)
    method = config.get("method", "bar")
    budget = _number(config.get("budget")) if method == "bar" else None  # l0 has no budget
    row = dict(model=config.get("model"), dataset=config.get("dataset"), method=method,
               budget=budget, pruning_factor=1.0 / budget if budget else None, lam=_number(config.get("lam")),
               schedule=config.get("schedule"), seed=_number(config.get("seed")))
    if summary is None:
        state = "running" if running_process(path) else "unfinished"
        return RunRow(state=state, **base, **row)
    state = summary.get("state")
    if state not in ("done", "stopped", "error"):
        return RunRow(state="damaged", problem=f"summary.json has state {state!r}", **base, **row)
    out = {k: _number(summary.get(k)) for k in ("volume_ratio", "teacher_accuracy", "pruned_accuracy",
                                                 "accuracy_drop", "steps_over_budget", "steps", "wall_seconds")}
    if budget is None and out["volume_ratio"]:  # no budget: the factor is the one reached
        row["pruning_factor"] = 1.0 / out["volume_ratio"]
    health = summary.get("health")
    if not isinstance(health, list):  # a folder written before runs judged their health
        try:
            classes = ((_read_object(path / "layout.json") or {}).get("data") or {}).get("num_classes")
        except (OSError, ValueError):
            classes = None
        health = health_findings(summary, classes if isinstance(classes, int) else None)
    out["health"] = "; ".join(map(str, health)) or "ok"
    return RunRow(state=state, **base, **row, **out)


def is_sweep(path: Path) -> bool:
    return path.is_dir() and (path / SWEEP_FILE).is_file()


def scan_runs(runs_root: str | os.PathLike) -> list[RunRow]:
    """Every run folder directly under runs_root, and those directly inside its sweep folders; newest
    first. Hidden folders (a run being created, one being removed) are skipped."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    rows = []
    for child in root.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        if holds_run(child):
            rows.append(run_row(child))
        elif is_sweep(child):
            for run in child.iterdir():
                if not run.name.startswith(".") and run.is_dir() and holds_run(run):
                    rows.append(run_row(run, name=f"{child.name}/{run.name}", sweep=child.name))
    return sorted(rows, key=lambda r: (r.date, r.name), reverse=True)


def rows_frame(rows: list[RunRow]):
    """The rows as a pandas DataFrame with every column, even when there are none."""
    import pandas as pd

    return pd.DataFrame([r.as_dict() for r in rows], columns=list(COLUMNS))


# ---- housekeeping: only run folders, only inside the runs folder ------------------------------------
def run_path(runs_root: str | os.PathLike, name: str) -> Path:
    """runs_root/name for a table's name ("run" or "sweep/run"), which must be a run folder there."""
    if not isinstance(name, str) or not name:
        raise RunFolderError(f"run name {name!r} is not allowed")
    parts = name.split("/")
    if len(parts) > 2:
        raise RunFolderError(f"run name {name!r} is not allowed: a run or sweep/run")
    path = safe_run_dir(runs_root, parts[0])
    if len(parts) == 2:
        path = safe_run_dir(path, parts[1])
    if not holds_run(path):
        raise RunFolderError(f"{name!r} is not a run folder in {str(Path(runs_root))!r}")
    return path


def _not_running(path: Path, name: str, doing: str) -> None:
    if running_process(path):
        raise RunFolderError(f"run {name!r} is still training; stop it before you {doing} it")


def rename_run(runs_root: str | os.PathLike, name: str, new_name: str) -> str:
    """Rename a run folder in the runs folder; returns the new table name. Refuses names that could
    leave the folder, names already taken, running runs and the runs of a sweep."""
    path = run_path(runs_root, name)
    if "/" in name:  # `bar sweep` finds a sweep's runs by their names
        raise RunFolderError(f"{name!r} is a run of sweep {name.split('/')[0]!r}, which finds its runs by name "
                             f"(b<budget>-s<seed>); rename the sweep folder instead")
    _not_running(path, name, "rename")
    target = safe_run_dir(path.parent, new_name)  # one plain name: no '/', '..' or control characters
    if target.exists():
        raise RunFolderError(f"a run or folder named {new_name!r} already exists in {str(path.parent)!r}")
    os.rename(path, target)
    return new_name


def delete_run(runs_root: str | os.PathLike, name: str) -> None:
    """Delete a run folder. It is first renamed to a hidden name in the same folder (atomic: the table
    never lists half a run), then removed."""
    path = run_path(runs_root, name)
    _not_running(path, name, "delete")
    trash = path.parent / f".{path.name}.deleted-{os.getpid()}-{time.time_ns()}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---- what this machine did before: the speed a live run is compared with ------------------------
SPEED_KEYS = ("model", "dataset", "batch_size", "threads", "device", "channels_last", "precision")
# what a config.json from before a setting existed ran with
_SPEED_DEFAULTS = {k: SETTING[k].earlier_value() for k in SPEED_KEYS if SETTING[k].added_later}


def past_speed(runs_root: str | os.PathLike, config: dict, exclude: str | os.PathLike | None = None,
               look_at: int = 5) -> tuple[float, str] | None:
    """(median training images/s, run name) of the fastest of the `look_at` newest finished runs in the
    runs folder with the same model, data, batch, threads and device; None if there is none."""
    import pandas as pd

    want = {k: config.get(k, _SPEED_DEFAULTS.get(k)) for k in SPEED_KEYS}
    best, seen = None, 0
    for row in scan_runs(runs_root):
        if row.state != "done" or (exclude is not None and Path(row.path) == Path(exclude)):
            continue
        try:
            other = _read_object(Path(row.path) / "config.json") or {}
        except (OSError, ValueError):
            continue
        if {k: other.get(k, _SPEED_DEFAULTS.get(k)) for k in SPEED_KEYS} != want:
            continue
        try:
            ips = pd.read_csv(Path(row.path) / "metrics.csv", usecols=["images_per_s"])["images_per_s"].median()
        except (OSError, ValueError, KeyError):
            continue
        if ips == ips and (best is None or ips > best[0]):  # ips == ips: not NaN
            best = (float(ips), row.name)
        seen += 1
        if seen >= look_at:
            break
    return best
