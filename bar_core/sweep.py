"""Budget sweeps: one BAR run per (budget, seed), all in one sweep folder.

    sweep.json   what was asked: budgets, seeds, the base settings, the command's options, the runs
    sweep.csv    one row per run folder, with the runs table's columns (bar_core.catalog), rewritten
                 atomically whenever a run ends
    b0.5-s0/     one ordinary run folder per (budget, seed), named by `run_name(budget, seed)`
    .lock        held (flock) while a process trains the sweep, so two never train the same one

`SweepPlan.open(folder, base, budgets, seeds)` checks every run's settings and what the folder already
holds, without writing anything; `plan.create()` then writes the folder and sweep.json. `bar sweep`
(`main`) trains a plan in this process, or in N worker processes of `bar train`; the dashboard's sweep
job (`bar_core.job.SweepJob`, started by `JobManager.start_sweep`) trains it in a thread.

The same request again continues a sweep: finished runs are skipped, stopped or unfinished ones
resume from their checkpoint, runs not begun start. A run that ended in error is kept as it is
(delete its folder to train it again). A sweep's settings never change: a request with other
settings is refused, but budgets and seeds may be added, and the sweep then grows to every
(budget, seed) pair of both. Only where runs train (device, threads) may differ between requests.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .catalog import SWEEP_FILE, RunRow, rows_frame, run_row, running_process
from .checkpoint import atomic_write
from .config import SETTING, SETTINGS, ConfigError, TrainConfig
from .runs import RunFolderError, _write_json_atomic, holds_run

SWEEP_CSV = "sweep.csv"
LOCK_FILE = ".lock"
FORMAT = 1
PER_RUN = ("budget", "seed")  # the settings each run of a sweep sets itself
# Settings a continued sweep may change: where a run trains, not what it computes.
MACHINE_SETTINGS = tuple(s.name for s in SETTINGS if s.resumable)
# Run states as `SweepPlan.run_status` names them.
TO_TRAIN = ("start", "restart", "resume")
FINISHED = ("done", "error")


# ------------------------------------------------------------------------------------------------
# Budgets, seeds and names


def _items(text: str, what: str, example: str) -> list[str]:
    if not isinstance(text, str):
        raise ConfigError(f"{what} list must be text like {example}, got {text!r}")
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ConfigError(f"{what} list {text!r} has an empty item; separate {what}s with single commas, e.g. {example}")
    return items


def parse_budgets(text: str) -> list[float]:
    """'1/2,1/4,0.125' -> [0.5, 0.25, 0.125]: comma-separated numbers or fractions in (0, 1], each once."""
    items = _items(text, "budget", "1/2,1/4")
    values = []
    for item in items:
        try:
            values.append(float(Fraction(item)) if "/" in item else float(item))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"budget {item!r} is not a number; budgets are numbers or fractions in (0, 1], "
                              f"e.g. 1/2,1/4") from None
    return check_budgets(values, texts=items)


def check_budgets(budgets: Sequence[float], texts: Sequence[str] | None = None) -> list[float]:
    """The budgets as floats, or ConfigError naming the first bad one: each in (0, 1], none twice, and
    no two with the same run name (they must differ within 6 significant digits). `texts`: the
    budgets as the user typed them, for the messages."""
    if not isinstance(budgets, Sequence) or isinstance(budgets, str) or not budgets:
        raise ConfigError(f"a sweep needs at least one budget in (0, 1], got {budgets!r}")
    texts = list(texts) if texts is not None else [str(b) for b in budgets]
    out: list[float] = []
    names: dict[str, str] = {}
    for value, shown in zip(budgets, texts):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not SETTING["budget"].in_range(value):
            raise ConfigError(f"budget {shown} is not in (0, 1]; a budget is the fraction of the initial "
                              f"volume V0 to keep, e.g. 1/4")
        value = float(value)
        name = f"b{value:g}"
        if name in names:
            if value in out:
                raise ConfigError(f"budget {value:g} is listed twice ({names[name]} and {shown}); give each budget once")
            raise ConfigError(f"budgets {names[name]} and {shown} give the same run name {name}; budgets must "
                              f"differ within 6 significant digits")
        names[name] = shown
        out.append(value)
    return out


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]: comma-separated integers >= 0, each once."""
    values = []
    for item in _items(text, "seed", "0,1"):
        try:
            values.append(int(item))
        except ValueError:
            raise ConfigError(f"seed {item!r} is not an integer; seeds are integers >= 0, e.g. 0,1") from None
    return check_seeds(values)


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds, or ConfigError naming the first bad one: integers >= 0, none twice."""
    if not isinstance(seeds, Sequence) or isinstance(seeds, str) or not seeds:
        raise ConfigError(f"a sweep needs at least one seed (an integer >= 0), got {seeds!r}")
    out: list[int] = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise ConfigError(f"seed {s!r} is not an integer; seeds are integers >= 0, e.g. 0,1")
        if s < 0:
            raise ConfigError(f"seed {s} is negative; seeds are integers >= 0")
        if s in out:
            raise ConfigError(f"seed {s} is listed twice; give each seed once")
        out.append(s)
    return out


def run_name(budget: float, seed: int) -> str:
    """The run folder's name in a sweep: b0.5-s0, b0.125-s1, b0.0625-s0."""
    return f"b{budget:g}-s{seed}"


def default_sweep_name(base: TrainConfig) -> str:
    return f"sweep-{base.model}-{base.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


# ------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its place in the plan, its folder name and its full settings."""
    index: int
    name: str
    budget: float
    seed: int
    config: TrainConfig


def _base_dict(base: TrainConfig) -> dict:
    d = base.to_dict()
    for key in PER_RUN:
        d.pop(key)
    return d


def _differences(old: dict, new: dict, ignore: Sequence[str]) -> list[str]:
    keys = [k for k in {**old, **new} if k not in ignore]
    return [f"{k}={old.get(k)!r} there, {new.get(k)!r} here" for k in keys if old.get(k) != new.get(k)]


class SweepLock:
    """An exclusive flock on the sweep folder's .lock: one process (or job thread) trains a sweep."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self._file = None

    def acquire(self) -> SweepLock:
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunFolderError(f"sweep {str(self.path.parent)!r} is being trained by {holder}; wait for it "
                                 f"or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


class SweepPlan:
    """The runs of a sweep folder: every (budget, seed) pair with its settings and folder.

    `open` compares a request with what the folder holds (refusing what cannot be continued) and
    never writes; `create` writes the folder and sweep.json; `run_status` says what one run needs."""

    def __init__(self, folder: str | os.PathLike, base: TrainConfig, budgets: Sequence[float], seeds: Sequence[int],
                 options: dict | None = None, runs: Sequence[tuple[float, int]] | None = None,
                 created: str | None = None):
        self.folder = Path(folder)
        self.base = base
        self.budgets = check_budgets(list(budgets))
        self.seeds = check_seeds(list(seeds))
        self.options = dict(options or {})
        self.created = created
        pairs = list(runs) if runs is not None else [(b, s) for b in self.budgets for s in self.seeds]
        base_dict = _base_dict(base)
        self.runs: list[SweepRun] = []
        for i, (b, s) in enumerate(pairs):
            cfg = TrainConfig.from_dict({**base_dict, "budget": b, "seed": s}).validate()
            self.runs.append(SweepRun(i, run_name(b, s), b, s, cfg))
        self.exists = False           # the folder held this sweep's sweep.json when opened
        self.added: list[str] = []    # runs this request adds to an existing sweep
        self.stored: dict | None = None

    # ---- opening, creating ----------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike, base: TrainConfig, budgets: Sequence[float], seeds: Sequence[int],
             options: dict | None = None) -> SweepPlan:
        """The plan of a request for `folder`: a new sweep, or the one already there, grown by the new
        budgets and seeds. Raises (ConfigError, RunFolderError) on bad settings, a folder that holds
        something else, a sweep made with other settings, or a run folder the sweep cannot use."""
        if base.method != "bar":
            raise ConfigError(f"a budget sweep needs method 'bar'; method {base.method!r} has no budget (its volume "
                              "ends where lam puts it): train one run per lam instead")
        plan = cls(folder, base, budgets, seeds, options)  # every run's settings are checked here
        stored = read_sweep_file(plan.folder)
        if stored is None:
            plan.check_runs()
            return plan
        old_base = _stored_config(plan.folder, stored, {k: getattr(base, k) for k in PER_RUN})
        diff = _differences(_base_dict(old_base), _base_dict(base), MACHINE_SETTINGS)
        if diff:
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise ConfigError(f"{str(plan.folder)!r} holds a sweep with other settings ({'; '.join(diff[:3])}{more}); "
                              f"a sweep's settings cannot change (budgets and seeds may be added): use another sweep folder")
        budgets_all = list(stored["budgets"]) + [b for b in plan.budgets if b not in stored["budgets"]]
        seeds_all = list(stored["seeds"]) + [s for s in plan.seeds if s not in stored["seeds"]]
        pairs = [(r["budget"], r["seed"]) for r in stored["runs"]]
        pairs += [(b, s) for b in budgets_all for s in seeds_all if (b, s) not in pairs]
        grown = cls(folder, base, budgets_all, seeds_all, options if len(pairs) > len(stored["runs"]) else
                    stored.get("options"), runs=pairs, created=stored.get("created"))
        grown.exists, grown.stored = True, stored
        grown.added = [r.name for r in grown.runs[len(stored["runs"]):]]
        grown.check_runs()
        return grown

    @classmethod
    def load(cls, folder: str | os.PathLike, machine: dict | None = None) -> SweepPlan:
        """The plan a sweep folder's sweep.json records (to continue it as it was asked); `machine`
        may set where its runs train (device, threads)."""
        stored = read_sweep_file(Path(folder))
        if stored is None:
            raise RunFolderError(f"{str(folder)!r} holds no sweep (no {SWEEP_FILE})")
        changes = {k: v for k, v in (machine or {}).items() if k in MACHINE_SETTINGS}
        base = _stored_config(Path(folder), stored, {"budget": stored["budgets"][0], "seed": stored["seeds"][0],
                                                     **changes})
        plan = cls(folder, base, stored["budgets"], stored["seeds"], stored.get("options"),
                   runs=[(r["budget"], r["seed"]) for r in stored["runs"]], created=stored.get("created"))
        plan.exists, plan.stored = True, stored
        plan.check_runs()
        return plan

    def to_json(self) -> dict:
        return {"format": FORMAT, "budgets": self.budgets, "seeds": self.seeds, "base": _base_dict(self.base),
                "options": self.options, "runs": [{"name": r.name, "budget": r.budget, "seed": r.seed} for r in self.runs],
                "created": self.created or time.strftime("%Y-%m-%d %H:%M:%S")}

    @property
    def needs_writing(self) -> bool:
        return not self.exists or bool(self.added)

    def create(self) -> None:
        """Write sweep.json: a new folder appears whole (built aside, then renamed), an existing
        sweep's file is replaced atomically."""
        data = self.to_json()
        self.created = data["created"]
        path = self.folder
        if self.exists or (path.is_dir() and any(path.iterdir())):
            _write_json_atomic(path / SWEEP_FILE, data)
            self.exists, self.added = True, []
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a sweep folder is an ordinary folder
        try:
            _write_json_atomic(staging / SWEEP_FILE, data)
            os.replace(staging, path)  # onto nothing or an empty folder
        except OSError as exc:
            (staging / SWEEP_FILE).unlink(missing_ok=True)
            staging.rmdir()
            raise RunFolderError(f"cannot create the sweep folder {str(path)!r}: {exc.strerror}") from None
        self.exists = True

    def lock(self) -> SweepLock:
        """Take the sweep's lock (RunFolderError if another process trains it); call after create()."""
        return SweepLock(self.folder).acquire()

    # ---- the runs -------------------------------------------------------------------------------
    def run_dir(self, run: SweepRun) -> Path:
        return self.folder / run.name

    def run_status(self, run: SweepRun) -> str:
        """What `run` needs now: 'start' (no folder yet), 'restart' (begun, never checkpointed),
        'resume' (stopped or unfinished, with a checkpoint), 'done', or 'error' (kept as it is).
        RunFolderError for a folder the sweep cannot use (not a run, other settings, still training)."""
        path = self.run_dir(run)
        if not path.exists():
            return "start"
        if not path.is_dir():
            raise RunFolderError(f"{str(path)!r} exists and is not a run folder; move it away to continue the sweep")
        if not holds_run(path):
            if any(path.iterdir()):
                raise RunFolderError(f"{str(path)!r} is not empty and holds no run; move it away to continue the sweep")
            return "start"
        row = run_row(path)
        if row.state == "damaged":
            raise RunFolderError(f"run {str(path)!r} cannot be read ({row.problem}); move it away to train it again")
        if row.state == "running":
            info = running_process(path) or {}
            raise RunFolderError(f"run {str(path)!r} is still training (pid {info.get('pid')}); wait for it or stop it")
        try:  # missing settings (a folder from an older version) read as their defaults
            config = TrainConfig.from_dict(json.loads((path / "config.json").read_text())).to_dict()
        except (OSError, ValueError, TypeError):
            raise RunFolderError(f"run {str(path)!r} has no config.json this version can read; move it away "
                                 f"to train it again") from None
        diff = _differences(config, run.config.to_dict(), MACHINE_SETTINGS)
        if diff:
            raise RunFolderError(f"run {str(path)!r} was trained with other settings than the sweep's "
                                 f"({'; '.join(diff[:3])}); move it away to train it again")
        if row.state in FINISHED:
            return row.state
        return "resume" if (path / "checkpoint.pt").is_file() else "restart"

    def check_runs(self) -> dict[str, str]:
        """Every run's status (see run_status); raises for the first folder the sweep cannot use."""
        return {r.name: self.run_status(r) for r in self.runs}

    def rows(self) -> list[RunRow]:
        """The runs-table row of every run that has a folder, in the plan's order."""
        sweep = self.folder.name
        return [run_row(self.run_dir(r), name=f"{sweep}/{r.name}", sweep=sweep)
                for r in self.runs if holds_run(self.run_dir(r))]

    def write_csv(self) -> Path:
        """sweep.csv: the rows as the runs table has them, replaced atomically."""
        frame = rows_frame(self.rows())
        path = self.folder / SWEEP_CSV
        atomic_write(path, lambda f: frame.to_csv(f, index=False), mode="w")
        return path


def _stored_config(folder: Path, stored: dict, changes: dict) -> TrainConfig:
    """sweep.json's base settings with `changes`; RunFolderError naming the file if they do not load."""
    try:
        return TrainConfig.from_dict({**stored["base"], **changes}).validate()
    except (ConfigError, TypeError) as exc:
        raise RunFolderError(f"{str(folder / SWEEP_FILE)!r} holds settings this version cannot use ({exc}); "
                             f"choose another sweep folder") from None


def read_sweep_file(folder: Path) -> dict | None:
    """sweep.json of `folder`, None for a folder that can take a new sweep (absent or empty);
    RunFolderError for one that holds something else or a sweep.json that cannot be read."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise RunFolderError(f"{str(folder)!r} exists and is not a folder; choose another sweep folder")
    path = folder / SWEEP_FILE
    if not path.is_file():
        if holds_run(folder):
            raise RunFolderError(f"{str(folder)!r} holds a run, not a sweep; choose another sweep folder")
        if any(folder.iterdir()):
            raise RunFolderError(f"{str(folder)!r} is not empty and holds no sweep (no {SWEEP_FILE}); "
                                 f"choose another sweep folder")
        return None
    try:
        data = json.loads(path.read_text())
        ok = (isinstance(data, dict) and isinstance(data.get("base"), dict) and data.get("budgets")
              and data.get("seeds") and isinstance(data.get("runs"), list)
              and all(isinstance(r, dict) and {"budget", "seed"} <= set(r) for r in data["runs"]))
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise RunFolderError(f"{str(path)!r} is not a readable sweep file; move the folder away or choose another sweep folder")
    return data


# ------------------------------------------------------------------------------------------------
# `bar sweep`


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _outcome_text(path: Path, seconds: float) -> tuple[str, str]:
    """(state, the end of a run's progress line) from its summary.json."""
    row = run_row(path)
    if row.state == "done":
        volume = "n/a" if row.volume_ratio is None else f"{row.volume_ratio:.4f}"
        return "done", f"done in {seconds:.1f} s (V/V0 {volume}, pruned accuracy {_pct(row.pruned_accuracy)})"
    if row.state == "stopped":
        return "stopped", "stopped; checkpoint kept (the same command resumes it)"
    if row.state == "error":
        error = json.loads((path / "summary.json").read_text()).get("error")
        return "error", f"error: {error}"
    return row.state, row.state


def request_from_args(args) -> tuple[TrainConfig, list[float], list[int], int]:
    """(base settings, budgets, seeds, workers) of `bar sweep`'s arguments; ConfigError on bad input."""
    from .cli import _config_from_args

    if getattr(args, "budget", None) is not None:
        raise ConfigError("--budget sets one run's budget; a sweep takes its budgets from --budgets LIST "
                          "(e.g. --budgets 1/2,1/4)")
    if getattr(args, "seed", None) is not None and args.seeds is not None:
        raise ConfigError("--seed sets one run's seed; with --seeds LIST give every seed there (e.g. --seeds 0,1)")
    budgets = parse_budgets(args.budgets)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if isinstance(args.workers, bool) or not isinstance(args.workers, int) or args.workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1 (runs trained at once), got {args.workers!r}")
    base = _config_from_args(args)
    return base, budgets, seeds if seeds is not None else check_seeds([base.seed]), args.workers


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Stop:
    """SIGINT/SIGTERM while the sweep trains: stop (each run saves its checkpoint), exit code 130."""

    def __init__(self, on_stop: Callable[[], None]):
        self.event = threading.Event()
        self._on_stop = on_stop
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if not self.event.is_set():
            _say("\nstopping the sweep: the current run(s) save a checkpoint (the same command resumes) ...")
        self.event.set()
        self._on_stop()


def main(args) -> int:
    """`bar sweep`: train every run of the plan not finished yet; 0 when all are done, 130 when
    stopped (Ctrl-C), 1 when a run failed."""
    from .trainer import Trainer

    base, budgets, seeds, workers = request_from_args(args)
    if getattr(args, "ray", None) is not None:
        if not args.ray.strip():
            raise ConfigError("--ray must be local, auto or a cluster address (host:6379, ray://host:10001), got ''")
        if workers != 1:
            raise ConfigError(f"--workers {workers} and --ray: Ray decides how many runs train at once (by their "
                              "--threads CPUs); give one of them")
        from .ray_sweep import _ray
        _ray()  # the package, before anything is written
    options = {"budgets": args.budgets, "seeds": args.seeds, "workers": workers, "config": args.config,
               "preset": args.preset,
               "quiet": bool(args.quiet), "settings": {s.name: getattr(args, s.name) for s in SETTINGS
                                                       if getattr(args, s.name, None) is not None}}
    plan = SweepPlan.open(args.out, base, budgets, seeds, options)
    todo = [r for r, st in zip(plan.runs, plan.check_runs().values()) if st in TO_TRAIN]
    if todo:  # bad data, a missing or mismatched teacher, a batch larger than the data: refused here
        Trainer(todo[0].config).prepare()
    lock = plan.lock() if plan.exists else None  # before sweep.json changes: another process may train it
    try:
        if plan.needs_writing:
            if plan.added:
                _say(f"sweep {plan.folder}: adding {len(plan.added)} run(s) ({', '.join(plan.added)}) "
                     f"to the {len(plan.stored['runs'])} it had")
            plan.create()
        lock = lock or plan.lock()
        status = plan.check_runs()  # again, under the lock
        todo = [r for r in plan.runs if status[r.name] in TO_TRAIN]
        counts = {k: sum(1 for v in status.values() if v == k) for k in ("done", "error", "resume")}
        workers = min(workers, max(1, len(todo)))
        _say(f"sweep {plan.folder}: {len(plan.runs)} run(s): {counts['done']} done, {counts['error']} failed before, "
             f"{counts['resume']} to resume, {len(todo) - counts['resume']} to start; {workers} worker(s)")
        for r in plan.runs:
            if status[r.name] == "done":
                _say(f"{_tag(plan, r)}: done before, skipped")
            elif status[r.name] == "error":
                _say(f"{_tag(plan, r)}: ended in error before, kept (delete its folder to train it again)")
        if getattr(args, "ray", None):
            from .ray_sweep import train_on_ray
            stopped, failed = train_on_ray(plan, todo, status, args.ray, base, _say)
        elif workers == 1:
            stopped, failed = _train_here(plan, todo, status, quiet=args.quiet)
        else:
            threads = base.threads or max(1, _cores() // workers)
            stopped, failed = _train_in_workers(plan, todo, status, workers, threads, base.device)
        plan.write_csv()
    finally:
        if lock is not None:
            lock.release()
    _print_table(plan)
    if stopped:
        return 130
    return 1 if failed or counts["error"] else 0


def _tag(plan: SweepPlan, run: SweepRun) -> str:
    return f"[{run.index + 1}/{len(plan.runs)}] {run.name} (budget {run.budget:g}, seed {run.seed})"


def _start_line(plan: SweepPlan, run: SweepRun, status: str, resumed_at: int | None = None) -> str:
    if status == "resume":
        return f"{_tag(plan, run)}: resuming" + (f" from step {resumed_at}" if resumed_at is not None else "")
    return f"{_tag(plan, run)}: starting" + (" again (it never saved a checkpoint)" if status == "restart" else "")


def _train_here(plan: SweepPlan, todo: list[SweepRun], status: dict, quiet: bool) -> tuple[bool, int]:
    """The runs one after another in this process; (stopped, runs failed)."""
    from .job import USER_ERRORS
    from .progress import ProgressBar
    from .runs import RunFolder
    from .trainer import Trainer

    current: list = [None]
    failed = 0

    def stop_current():
        if current[0] is not None:
            current[0].stop()

    with _Stop(stop_current) as stop:
        for run in todo:
            if stop.event.is_set():
                break
            path = plan.run_dir(run)
            state = status[run.name]
            t0 = time.monotonic()
            try:
                if state == "resume":
                    folder, cfg, ckpt = RunFolder.open_for_resume(path)
                    # where it runs follows this command; what it computes stays the run's own
                    cfg = cfg.replace(**{k: getattr(run.config, k) for k in MACHINE_SETTINGS})
                    trainer = Trainer(cfg.validate()).prepare()
                    trainer.load_checkpoint_state(ckpt)
                    _say(_start_line(plan, run, state, trainer.step))
                else:
                    trainer = Trainer(run.config).prepare()
                    folder = None
            except USER_ERRORS as exc:
                _say(f"{_tag(plan, run)}: not {'resumed' if state == 'resume' else 'started'}: {exc}")
                failed += 1
                continue
            current[0] = trainer
            if stop.event.is_set():  # Ctrl-C while it was being prepared: nothing of it is written
                break
            if folder is None:
                folder = RunFolder.create(path, run.config, overwrite=state == "restart")
                _say(_start_line(plan, run, state))
            trainer.run_folder = folder
            if not quiet:
                trainer.subscribe(ProgressBar())
            summary = trainer.run()
            current[0] = None
            outcome, text = _outcome_text(path, time.monotonic() - t0)
            _say(f"{_tag(plan, run)}: {text}")
            failed += summary["state"] == "error"
            plan.write_csv()
        return stop.event.is_set(), failed


def _child_env() -> dict:
    """The workers import this very bar_core, wherever the parent found it."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _last_line(path: Path) -> str:
    try:
        lines = [l.strip() for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    errors = [l for l in lines if l.startswith("error:")]
    return (errors or lines or [""])[-1]


def _train_in_workers(plan: SweepPlan, todo: list[SweepRun], status: dict, workers: int, threads: int,
                      device: str) -> tuple[bool, int]:
    """The runs in `workers` processes of `bar train --quiet` (their bars would overwrite each other on
    one terminal), each with `threads` torch threads; (stopped, runs failed)."""
    running: dict[subprocess.Popen, tuple[SweepRun, float, Path]] = {}
    failed = 0

    def stop_all():
        for proc in list(running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the train CLI stops after its step and saves a checkpoint

    with tempfile.TemporaryDirectory(prefix="bar-sweep-") as tmp, _Stop(stop_all) as stop:
        pending = list(todo)
        while pending or running:
            while pending and len(running) < workers and not stop.event.is_set():
                run = pending.pop(0)
                path, state = plan.run_dir(run), status[run.name]
                cmd = [sys.executable, "-m", "bar_core", "train", "--out", str(path), "--quiet"]
                if state == "resume":
                    cmd += ["--resume", "--threads", str(threads), "--device", device]
                else:
                    config_file = Path(tmp) / f"{run.name}.json"
                    config_file.write_text(json.dumps(dataclasses.replace(run.config, threads=threads).to_dict()))
                    cmd += ["--config", str(config_file)] + (["--overwrite"] if state == "restart" else [])
                log = Path(tmp) / f"{run.name}.log"
                with open(log, "w") as out:
                    # own session: a terminal's Ctrl-C reaches only this process, which passes it on once
                    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=_child_env(), start_new_session=True)
                running[proc] = (run, time.monotonic(), log)
                _say(_start_line(plan, run, state) + f" (worker pid {proc.pid}, {threads} thread(s))")
            for proc in [p for p in running if p.poll() is not None]:
                run, t0, log = running.pop(proc)
                path = plan.run_dir(run)
                if proc.returncode in (0, 1, 130) and (path / "summary.json").is_file():
                    outcome, text = _outcome_text(path, time.monotonic() - t0)
                elif stop.event.is_set():  # interrupted before its trainer took the signal
                    outcome, text = "stopped", "stopped before it trained a step (the same command continues it)"
                else:
                    outcome, text = "failed", f"failed (exit code {proc.returncode}): {_last_line(log)}"
                failed += outcome in ("error", "failed")
                _say(f"{_tag(plan, run)}: {text}")
                plan.write_csv()
            if stop.event.is_set() and not running:
                break
            time.sleep(0.1)
        return stop.event.is_set(), failed


def _print_table(plan: SweepPlan) -> None:
    rows = plan.rows()
    print(f"sweep folder: {plan.folder} ({len(rows)} of {len(plan.runs)} runs begun; table in {plan.folder / SWEEP_CSV})")
    if not rows:
        return
    print(f"{'run':<16} {'state':<10} {'budget':>8} {'seed':>5} {'V/V0':>8} {'pruned acc':>11} {'wall s':>8}")
    for r in rows:
        def num(v, fmt):
            return "n/a" if v is None else format(v, fmt)
        print(f"{r.name.split('/')[-1]:<16} {r.state:<10} {num(r.budget, 'g'):>8} {num(r.seed, 'd'):>5} "
              f"{num(r.volume_ratio, '.4f'):>8} {_pct(r.pruned_accuracy):>11} {num(r.wall_seconds, '.1f'):>8}")
