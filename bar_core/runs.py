"""Run folders: everything a BAR run leaves behind, readable with pandas and numpy alone.

    bar-run.json   the marker that makes the folder a run (written first)
    config.json    the TrainConfig (feed it back to reproduce the run)
    layout.json    gated layers (name, channels, area), V0, a, B·V0, phases, data, device
    metrics.csv    one row per training step
    epochs.csv     one row per epoch (epoch 0 = before pruning)
    gates.npz      per-layer log α, P(z>0), ẑ per epoch: log_alpha_<i> has shape (epochs, channels)
    events.jsonl   warnings and errors, one JSON object per line
    checkpoint.pt  student, teacher, optimisers and progress (written atomically)
    summary.json   the outcome: budget, volume_ratio, accuracies, steps_over_budget, wall_seconds, ...
    running.json   while a process trains in the folder: its pid and host (the runs table's "running")

The CSV columns and JSON keys are the fields of the records in records.py; `read_records` reads a
folder back into those records.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
import zipfile
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write, load_file, save_atomic, save_teacher
from .config import TrainConfig
from .records import (
    EPOCH_COLUMNS,
    GATE_KEYS,
    METRIC_COLUMNS,
    EndRecord,
    EpochRecord,
    Record,
    StartRecord,
    StepRecord,
    event_record,
)
from .storage import disk_full

RUN_MARKER = "bar-run.json"  # written first into every run folder: what makes a folder a run
RUNNING_MARKER = "running.json"
# Every file a run writes; an overwrite removes only these, and refuses a folder holding anything else.
RUN_FILES = (RUN_MARKER, "config.json", "layout.json", "metrics.csv", "epochs.csv", "gates.npz", "events.jsonl",
             "checkpoint.pt", "teacher.pt", "summary.json", RUNNING_MARKER)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (taken, missing, unsafe name); one-line message."""


def safe_run_dir(runs_root: str | os.PathLike, name: str) -> Path:
    """runs_root/name for a user-typed run name; refuses anything that could leave runs_root."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise RunFolderError(f"run name {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-', "
                             f"starting with a letter or digit")
    root = Path(runs_root).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise RunFolderError(f"run name {name!r} would leave the runs folder {str(root)!r}")
    return path


def holds_run(path: str | os.PathLike) -> bool:
    """Whether `path` is a run folder: it holds the marker every run writes first, or (a folder written
    before runs had one) a config.json with a model and a budget next to a layout.json or metrics.csv.
    A folder that merely holds a file named config.json is not a run."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / RUN_MARKER).is_file():
        return True
    if not ((path / "layout.json").is_file() or (path / "metrics.csv").is_file()):
        return False
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "model" in config and "budget" in config


# what atomic_write leaves behind when it is cut short (SIGKILL, power loss): ".<file>.<random>.tmp"
_TEMP = re.compile(r"\..+\.tmp$")


def foreign_entries(path: Path) -> list[str]:
    """What a run folder holds that no run wrote (a user's notes, code, other results)."""
    return sorted(p.name for p in path.iterdir() if p.name not in RUN_FILES and not _TEMP.match(p.name))


def remove_cut_writes(path: Path) -> list[str]:
    """Delete the temporary files of atomic writes to the run's own files that never finished (their
    targets are intact); returns their names. Only the run's writer calls it (on start and resume)."""
    gone = []
    for p in path.iterdir():
        m = re.fullmatch(r"\.(.+?)\.[^.]+\.tmp", p.name)
        if m and m.group(1) in RUN_FILES and p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return sorted(gone)


def list_runs(runs_root: str | os.PathLike) -> list[Path]:
    """Run folders directly under runs_root, newest first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and holds_run(p)]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def default_runs_root() -> Path:
    """$BAR_RUNS_DIR, else `runs/` in the working folder (the CLI's default too; tests point the
    variable at a temporary folder)."""
    env = os.environ.get("BAR_RUNS_DIR")
    return Path(env) if env else Path.cwd() / "runs"


def default_run_name(cfg: TrainConfig) -> str:
    return f"{cfg.model}-{cfg.dataset}-b{cfg.budget:g}-{time.strftime('%Y%m%d-%H%M%S')}"


def _write_json_atomic(path: Path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_json_default) + "\n"), mode="w")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(v):
    """CSV cell: NaN as empty (pandas reads it back as NaN), floats compact."""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, bool):
        return int(v)
    return v


_STEP_VALUES = attrgetter(*METRIC_COLUMNS)  # a record's metrics.csv row, in column order
_EPOCH_VALUES = attrgetter(*EPOCH_COLUMNS)


class RunFolder:
    """Writes one run's folder. `write_record` is a trainer subscriber."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._metrics = None
        self._metrics_writer = None
        self._last_flush = 0.0
        self._snapshots: list[tuple[int, dict]] = []

    # ---- creating and reopening -----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, config: TrainConfig, *, overwrite: bool = False) -> RunFolder:
        """Make a fresh run folder holding config.json. Refuses a folder that holds a run unless
        `overwrite`, and any other non-empty folder. The new folder appears whole (built aside,
        then renamed); an overwritten run is removed only once the new one is in place."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{str(path)!r} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            if not holds_run(path):
                raise RunFolderError(f"{str(path)!r} is not empty and holds no run; choose another folder")
            if not overwrite:
                raise RunFolderError(f"{str(path)!r} already holds a run; use --resume to continue it "
                                     f"or --overwrite to replace it")
            foreign = foreign_entries(path)
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise RunFolderError(f"{str(path)!r} holds a run and files no run wrote ({shown}); overwrite "
                                     f"replaces only a run's own files: move those, or choose another folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
        except (FileExistsError, NotADirectoryError):
            raise RunFolderError(f"cannot create {str(path)!r}: a file stands where a folder of its path "
                                 f"should be") from None
        except OSError as exc:
            raise RunFolderError(f"cannot create {str(path)!r}: {exc.strerror or exc}") from None
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run folder is an ordinary folder
        from . import __version__

        _write_json_atomic(staging / RUN_MARKER, {"format": 1, "written_by": f"bar-explorer {__version__}"})
        _write_json_atomic(staging / "config.json", config.to_dict())
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return cls(path)

    @classmethod
    def open_for_resume(cls, path: str | os.PathLike) -> tuple[RunFolder, TrainConfig, dict]:
        """(folder, its config, its checkpoint state) for a run to continue."""
        path = Path(path)
        if not holds_run(path):
            raise RunFolderError(f"{str(path)!r} holds no run to resume")
        if not (path / "checkpoint.pt").is_file():
            raise RunFolderError(f"{str(path)!r} has no checkpoint.pt yet; nothing to resume from")
        summary = path / "summary.json"
        if summary.is_file():
            try:
                state = json.loads(summary.read_text()).get("state")
            except (OSError, ValueError, AttributeError):
                state = None  # a damaged outcome: the checkpoint decides, and the run writes a new one
            if state == "done":
                raise RunFolderError(f"{str(path)!r} holds a finished run; nothing to resume")
        try:
            data = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{str(path / 'config.json')!r} cannot be read ({exc})") from None
        config = TrainConfig.from_file_dict(data, where=str(path / "config.json"))
        state = load_file(path / "checkpoint.pt", "run checkpoint")
        return cls(path), config, state

    # ---- writing --------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        self._flush(force=True)
        target = self.path / "checkpoint.pt"
        try:
            save_atomic(state, target)
        except RuntimeError as exc:  # torch's zip writer reports a failed write as its own RuntimeError
            if "write" not in str(exc).lower():
                raise
            code = errno.ENOSPC if disk_full(self.path) else errno.EIO
            raise OSError(code, os.strerror(code), str(target)) from None

    def save_teacher(self, model, config: TrainConfig, spec, accuracy) -> None:
        save_teacher(model, self.path / "teacher.pt", model_name=config.model, dataset=config.dataset,
                     in_channels=spec.in_channels, num_classes=spec.num_classes, accuracy=accuracy or 0.0)

    def write_record(self, record: Record) -> None:
        kind = record.kind
        if kind == "step":
            self._metrics_writer.writerow([_clean(v) for v in _STEP_VALUES(record)])
            self._flush()
        elif kind == "start":
            self._start(record)
        elif kind == "epoch":
            self._epoch(record)
        elif kind in ("info", "warning", "error", "status"):
            with open(self.path / "events.jsonl", "a") as f:
                f.write(json.dumps(record.to_event()) + "\n")
        elif kind == "end":
            try:
                if self._metrics is not None:
                    metrics, self._metrics = self._metrics, None
                    metrics.close()  # flushes
                _write_json_atomic(self.path / "summary.json", record.summary)
            finally:  # even on a full disk (removing a file needs no space): nothing trains here any more
                (self.path / RUNNING_MARKER).unlink(missing_ok=True)

    def _start(self, record: StartRecord) -> None:
        remove_cut_writes(self.path)
        _write_json_atomic(self.path / "layout.json", record.layout())
        resumed_at = record.resumed_at
        metrics_path = self.path / "metrics.csv"
        if resumed_at and metrics_path.exists():
            # What happened after the checkpoint is undone: its steps, epochs, gates and events.
            _truncate_csv(metrics_path, lambda row: int(row["step"]) < resumed_at)
            _truncate_csv(self.path / "epochs.csv", lambda row: int(row["step"]) <= resumed_at)
            _truncate_events(self.path / "events.jsonl", resumed_at)
            kept_epochs = set(_read_csv_column(self.path / "epochs.csv", "epoch"))
            self._snapshots = [(e, s) for e, s in _load_snapshots(self.path / "gates.npz") if e in kept_epochs]
        else:
            for name in ("metrics.csv", "epochs.csv", "gates.npz", "events.jsonl", "summary.json"):
                (self.path / name).unlink(missing_ok=True)
        (self.path / "summary.json").unlink(missing_ok=True)  # a run in progress has no outcome yet
        _write_json_atomic(self.path / RUNNING_MARKER, {"pid": os.getpid(), "host": socket.gethostname(),
                                                         "started": time.time()})
        new = not metrics_path.exists()
        self._metrics = open(metrics_path, "a", newline="")
        self._metrics_writer = csv.writer(self._metrics)
        if new:
            self._metrics_writer.writerow(METRIC_COLUMNS)

    def _epoch(self, record: EpochRecord) -> None:
        path = self.path / "epochs.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(EPOCH_COLUMNS)
            w.writerow(["" if v is None else _clean(v) for v in _EPOCH_VALUES(record)])
        self._snapshots.append((record.epoch, record.gates))
        _save_snapshots(self.path / "gates.npz", self._snapshots)

    def _flush(self, force: bool = False) -> None:
        # Flush about once a second so a live reader (the dashboard replaying a CLI run) sees progress
        # without a syscall per step.
        now = time.monotonic()
        if self._metrics is not None and (force or now - self._last_flush > 1.0):
            try:
                self._metrics.flush()
            except OSError as exc:  # a buffered write's error names no file: name it
                raise OSError(exc.errno, exc.strerror, exc.filename or str(self.path / "metrics.csv")) from None
            self._last_flush = now


def _whole_rows(path: Path) -> tuple[list[str] | None, list[dict]]:
    """(header, rows) of a CSV the run wrote, without a row cut short by a crash: the text after the
    last newline, and rows that lack a field or whose step is not a number, are dropped."""
    text = _complete_lines(path).decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for r in reader:
        if None in r.values() or None in r or not str(r.get("step", "")).strip().isdigit():
            continue
        rows.append(r)
    return reader.fieldnames, rows


def _truncate_csv(path: Path, keep) -> None:
    if not path.exists():
        return
    fields, rows = _whole_rows(path)
    rows = [r for r in rows if keep(r)]
    def write(f):
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    atomic_write(path, write, mode="w")


def _truncate_events(path: Path, resumed_at: int) -> None:
    """Keep the events before the checkpoint a run continues from; an error at its step came after
    it (the failed step never completed)."""
    if not path.exists():
        return
    kept = []
    for line in _complete_lines(path).decode("utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line) if line.strip() else None
        except ValueError:
            continue  # a line cut short by a crash
        if not isinstance(event, dict):
            continue
        step = event.get("step") if isinstance(event.get("step"), int) else None
        if event and (step is None or step < resumed_at or (step == resumed_at and event.get("kind") != "error")):
            kept.append(line + "\n")
    atomic_write(path, lambda f: f.write("".join(kept)), mode="w")


def _read_csv_column(path: Path, column: str) -> list[int]:
    if not path.exists():
        return []
    return [int(r[column]) for r in _whole_rows(path)[1]]


def _save_snapshots(path: Path, snapshots: list[tuple[int, dict]]) -> None:
    layers = list(snapshots[0][1])
    arrays = {"epochs": np.array([e for e, _ in snapshots], dtype=np.int64), "layers": np.array(layers)}
    for i, layer in enumerate(layers):
        for key in GATE_KEYS:
            arrays[f"{key}_{i}"] = np.stack([s[layer][key] for _, s in snapshots]).astype(np.float32)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def _load_snapshots(path: Path) -> list[tuple[int, dict]]:
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as z:
        layers = [str(n) for n in z["layers"]]
        epochs = [int(e) for e in z["epochs"]]
        per = {k: z[k] for k in z.files}
    return [(e, {layer: {key: per[f"{key}_{i}"][j] for key in GATE_KEYS}
                 for i, layer in enumerate(layers)}) for j, e in enumerate(epochs)]


@dataclass
class RunData:
    """Everything a finished or running run folder holds, loaded for replay."""
    path: Path
    config: dict
    layout: dict
    metrics: object            # pandas DataFrame, one row per step
    epochs: object             # pandas DataFrame, one row per epoch
    gates: list[tuple[int, dict]]  # (epoch, {layer: {log_alpha, prob_open, test_gate}})
    summary: dict | None
    events: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per damaged file: what was left out

    def records(self) -> list[Record]:
        """The folder as the trainer's records: start, the steps, the epochs (with their gates), the
        events, and the end if the run has one; each kind in the order it was written. A CSV whose
        values cannot be read gives no records (and a line in `problems`)."""
        out: list[Record] = [StartRecord.from_folder(dict(self.config), dict(self.layout))]
        try:
            out += map(StepRecord, *_frame_columns(StepRecord, self.metrics, "metrics.csv"))
        except (RunFolderError, ValueError, TypeError) as exc:
            self.problems.append(f"metrics.csv: {_first_line(exc)}; the steps are not shown")
        gates = dict(self.gates)
        try:
            epoch_columns = _frame_columns(EpochRecord, self.epochs, "epochs.csv")
            epoch_columns.append([gates.get(e, {}) for e in epoch_columns[EPOCH_COLUMNS.index("epoch")]])
            out += map(EpochRecord, *epoch_columns)
        except (RunFolderError, ValueError, TypeError) as exc:
            self.problems.append(f"epochs.csv: {_first_line(exc)}; the epochs are not shown")
        out += map(event_record, self.events)
        if self.summary is not None:
            out.append(EndRecord(state=self.summary.get("state"), summary=self.summary))
        return out


def _frame_columns(cls, frame, name: str) -> list[list]:
    """A CSV's columns as Python lists typed as the record class declares them; a column that an
    older run folder lacks reads as NaN (float), None (optional) or False (bool)."""
    n = len(frame)
    out = []
    for f in fields(cls):
        if not f.metadata.get("column", True):
            continue
        kind = f.type  # the annotation as written (postponed annotations)
        if f.name not in frame:
            missing = {"float": math.nan, "float | None": None, "bool": False}
            if kind not in missing:
                raise RunFolderError(f"{name} has no column {f.name!r}")
            out.append([missing[kind]] * n)
            continue
        col = frame[f.name]
        if kind == "int":
            out.append(col.to_numpy(dtype=np.int64).tolist())
        elif kind == "str":
            out.append(col.astype(str).tolist())
        elif kind == "bool":
            out.append(col.fillna(0).astype(int).astype(bool).tolist())
        elif kind == "float":
            out.append(col.to_numpy(dtype=np.float64, na_value=np.nan).tolist())
        elif kind == "float | None":
            out.append([None if math.isnan(v) else v for v in col.to_numpy(dtype=np.float64, na_value=np.nan).tolist()])
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no CSV reader for type {kind!r}")
    return out


def _complete_lines(p: Path) -> bytes:
    """A file's text up to its last newline: a run still being written may end in half a row."""
    data = p.read_bytes() if p.is_file() else b""
    return data[: data.rfind(b"\n") + 1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


# summary.json's values and the types they must have (a number may be None where nothing was measured)
_NUMBER, _COUNT = (int, float), int
SUMMARY_TYPES = {"state": str, "error": str, "method": str, "model": str, "dataset": str, "device": str, "budget_met": bool,
                 "budget": _NUMBER, "pruning_factor": _NUMBER, "volume": _NUMBER, "v0": _NUMBER,
                 "volume_ratio": _NUMBER, "teacher_accuracy": _NUMBER, "pruned_accuracy": _NUMBER,
                 "accuracy_drop": _NUMBER, "wall_seconds": _NUMBER, "steps": _COUNT, "steps_over_budget": _COUNT,
                 "extra_prune_steps": _COUNT, "kept_channels": _COUNT, "total_channels": _COUNT, "threads": _COUNT,
                 "mac_ratio": _NUMBER, "target_mac_ratio": _NUMBER, "health": list}


def clean_summary(summary) -> tuple[dict | None, list[str]]:
    """summary.json with every value of the wrong type left out, and one line per value left out.
    Without a state it is no outcome: None."""
    if summary is None:
        return None, []
    if not isinstance(summary, dict):
        return None, [f"summary.json holds a {type(summary).__name__}, not an object; the outcome is not shown"]
    out, dropped = {}, []
    for key, value in summary.items():
        want = SUMMARY_TYPES.get(key)
        wrong = want is not None and value is not None and (
            not isinstance(value, want) or (want is not bool and isinstance(value, bool)))
        if key == "health" and not wrong:
            wrong = not all(isinstance(v, str) for v in value)
        if wrong:
            dropped.append(key)
        else:
            out[key] = value
    problems = [f"summary.json: {', '.join(dropped)} {'is' if len(dropped) == 1 else 'are'} not of the right type "
                "and left out"] if dropped else []
    if out.get("state") is None:
        return None, [*problems, "summary.json has no state; the outcome is not shown"]
    return out, problems


def load_run(path: str | os.PathLike) -> RunData:
    """Read a run folder (written by the app or the CLI) for replay. A damaged file (cut short, not of
    the run's format) is left out with one line in `problems`; the rest is read as usual."""
    import pandas as pd

    path = Path(path)
    if not holds_run(path):
        raise RunFolderError(f"{str(path)!r} is not a run folder (no config.json)")
    problems: list[str] = []

    def read_json(name, default=None, kind=dict):
        p = path / name
        if not p.is_file():
            return default
        try:
            obj = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{name} cannot be read ({_first_line(exc)})")
            return default
        if kind is not None and not isinstance(obj, kind):
            problems.append(f"{name} holds a {type(obj).__name__}, not an object; it is left out")
            return default
        return obj

    def read_csv(name, columns):
        empty = pd.DataFrame(columns=columns)
        try:
            text = _complete_lines(path / name)
            return pd.read_csv(io.BytesIO(text)) if text else empty
        except pd.errors.EmptyDataError:
            return empty
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            problems.append(f"{name} cannot be read ({_first_line(exc)}); it is left out")
            return empty

    events, bad_lines = [], 0
    try:
        lines = _complete_lines(path / "events.jsonl").decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        problems.append(f"events.jsonl cannot be read ({_first_line(exc)})")
        lines = []
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            events.append(event)
        else:
            bad_lines += 1
    if bad_lines:
        problems.append(f"events.jsonl: {bad_lines} line{'s' if bad_lines > 1 else ''} not a JSON object, left out")
    try:
        gates = _load_snapshots(path / "gates.npz")
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        problems.append(f"gates.npz cannot be read ({_first_line(exc)}); the gate views are empty")
        gates = []
    summary, summary_problems = clean_summary(read_json("summary.json", kind=None))
    config = read_json("config.json", {})
    layout = read_json("layout.json", {})
    return RunData(path=path, config=config, layout=layout, metrics=read_csv("metrics.csv", list(METRIC_COLUMNS)),
                   epochs=read_csv("epochs.csv", list(EPOCH_COLUMNS)), gates=gates, summary=summary,
                   events=events, problems=[*problems, *summary_problems])


def read_records(path: str | os.PathLike) -> list[Record]:
    """A run folder's records (see RunData.records): what replay and a continued run's history read."""
    return load_run(path).records()
