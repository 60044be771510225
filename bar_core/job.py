"""Job threads: one training job in a background thread, and the manager that owns it.

The trainer runs in the job's daemon thread and pushes its records to the run folder and to the job's
`LiveBuffer` (bar_core/history.py); readers call `Job.snapshot()`. Run folders, their names and the
history live elsewhere (runs.py, history.py); this module holds the threads and their states.

A sweep (bar_core/sweep.py) is one job too, a `SweepJob`: its thread trains the sweep's runs one after
another, each as a `Job` with its own live buffer, and its snapshot is the current run's.

`JobManager` owns at most one active job: a second `start` or `start_sweep` while one is preparing or
running raises `JobBusy` and never starts a second trainer. Nothing here imports streamlit; the app keeps one
`JobManager` in `st.cache_resource` so that every tab and every reload sees the same job.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig
from .data import DataError
from .history import DEFAULT_MAX_POINTS, LiveBuffer, RunSnapshot
from .models import ModelError
from .records import MessageRecord
from .runs import RunFolder, RunFolderError, default_run_name, default_runs_root, holds_run, safe_run_dir

# Errors whose message is meant for the user (bad settings, missing data, bad checkpoints, taken names).
USER_ERRORS = (ConfigError, DataError, ModelError, CheckpointError, RunFolderError)
ACTIVE_STATES = ("starting", "running", "paused", "stopping")
FINAL_STATES = ("done", "stopped", "error")


class JobBusy(RuntimeError):
    """A job is already being prepared or running; only one trainer runs at a time."""


# ------------------------------------------------------------------------------------------------
# A job and the manager that owns it


class _Threaded:
    """What a job and a sweep job share: one training thread, and a `state` of ACTIVE_STATES while it
    trains."""
    thread: threading.Thread | None = None
    state: str

    def join(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.alive

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


class Job(_Threaded):
    """One BAR run in a daemon thread. `start()` prepares the trainer in the calling thread (so bad
    input raises a one-line error before anything is created), creates the run folder, then trains."""

    kind = "run"

    def __init__(self, config: TrainConfig | None, runs_root: str | os.PathLike | None = None,
                 name: str | None = None, trainer_factory: Callable | None = None,
                 continue_run: str | os.PathLike | None = None, overwrite: bool = False):
        """`continue_run`: the folder of a stopped run under `runs_root` to continue with its own
        settings (config and name are taken from it). `overwrite`: replace a run already named
        `name` (a sweep's run that never saved a checkpoint)."""
        self.overwrite = overwrite
        self.runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
        self.continue_dir = Path(continue_run) if continue_run is not None else None
        self.config = config
        self.name = self.continue_dir.name if self.continue_dir is not None else name or default_run_name(config)
        self._auto_name = name is None and self.continue_dir is None
        self.buffer = LiveBuffer(history=self.continue_dir)
        self.trainer = None
        self.folder: RunFolder | None = None
        self.thread: threading.Thread | None = None
        self.summary: dict | None = None
        self.crash: str | None = None
        self.started_at: float | None = None
        self._stop_requested = False
        self._trainer_factory = trainer_factory

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> Job:
        if self.continue_dir is not None:
            return self._start_continued()
        from .trainer import Trainer

        cfg = self.config.validate()
        path = safe_run_dir(self.runs_root, self.name)
        if self._auto_name:  # two starts within a second: name-2, name-3, ...
            base, k = self.name, 2
            while path.exists():
                self.name = f"{base}-{k}"
                path, k = safe_run_dir(self.runs_root, self.name), k + 1
        if holds_run(path) and not self.overwrite:
            raise RunFolderError(f"a run named {self.name!r} already exists in {str(self.runs_root)!r}; "
                                 f"choose another name")
        trainer = (self._trainer_factory or Trainer)(cfg)
        trainer.prepare()                      # bad data, teacher or settings raise here
        self.folder = RunFolder.create(path, cfg, overwrite=self.overwrite)
        return self._launch(trainer)

    def _start_continued(self) -> Job:
        """Continue a stopped run from its checkpoint, in its own folder and with its own settings."""
        from .trainer import Trainer

        path = self.continue_dir
        root = self.runs_root.resolve()
        if not path.resolve().is_relative_to(root) or path.resolve() == root:
            raise RunFolderError(f"only runs under {str(self.runs_root)!r} can be continued here, not {str(path)!r}; "
                                 f"continue others with: python -m bar_core train --resume --out {path}")
        folder, cfg, state = RunFolder.open_for_resume(path)
        if self.config is not None:  # where it runs may change; what it computes may not
            cfg = cfg.replace(device=self.config.device, threads=self.config.threads)
        self.config = cfg.validate()
        trainer = (self._trainer_factory or Trainer)(self.config)
        trainer.prepare()
        trainer.load_checkpoint_state(state)
        self.folder = folder
        return self._launch(trainer)

    def _launch(self, trainer) -> Job:
        trainer.run_folder = self.folder
        trainer.subscribe(self.buffer)
        self.trainer = trainer
        self.started_at = time.time()
        self.thread = threading.Thread(target=self._run, name=f"bar-job-{self.name}", daemon=True)
        atexit.register(self._stop_at_exit)
        self.thread.start()
        return self

    def _stop_at_exit(self, timeout: float = 20.0) -> None:
        """Interpreter exit (the server got SIGTERM): stop after the current step, which saves a
        checkpoint, instead of killing the daemon thread inside a torch op (that aborts the process)."""
        if self.alive:
            self.resume()
            self.stop()
            self.join(timeout)

    def _run(self) -> None:
        try:
            self.summary = self.trainer.run()
        except BaseException as exc:  # noqa: BLE001 - the thread must never die silently
            self.crash = f"{type(exc).__name__}: {exc}".splitlines()[0]
            try:
                self.buffer(MessageRecord("error", self.crash, getattr(self.trainer, "step", 0)))
            except Exception:  # noqa: BLE001
                pass
        finally:
            atexit.unregister(self._stop_at_exit)

    def pause(self) -> None:
        if self.trainer is not None and self.active:
            self.trainer.pause()

    def resume(self) -> None:
        if self.trainer is not None:
            self.trainer.resume()

    def stop(self) -> None:
        """Ask the trainer to stop after the current step; it saves a checkpoint on the way out."""
        if self.trainer is not None and self.alive:
            self._stop_requested = True
            self.trainer.stop()

    # ---- state --------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self.trainer is None:
            return "created"
        if self.alive:
            if self._stop_requested:
                return "stopping"
            if self.trainer.paused:
                return "paused"  # asked to pause; the trainer parks at its next step
            return "running" if self.trainer.state in ("running", "paused") else "starting"
        if self.crash:
            return "error"
        return self.trainer.state if self.trainer.state in FINAL_STATES else "error"

    @property
    def run_dir(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    def snapshot(self, max_points: int = DEFAULT_MAX_POINTS) -> RunSnapshot:
        return self.buffer.snapshot(self.state, max_points, source="live",
                                    run_dir=str(self.run_dir) if self.run_dir else None, error=self.crash)


@dataclass(frozen=True)
class SweepProgress:
    """Where a sweep job stands: the run it trains now (or trained last)."""
    index: int               # the run's place in the sweep, from 0
    total: int               # runs in the sweep
    name: str                # the run's folder name in the sweep, e.g. b0.25-s0
    budget: float
    seed: int
    state: str               # the run's job state (starting, running, paused, stopping, done, stopped, error)
    run_dir: str | None      # None until its folder exists


class _SweepBuffer:
    """The current run's buffer as the app reads it: `version` only grows over the sweep's runs, so a
    view cached on it never mistakes the next run for the one before."""

    def __init__(self, sweep: SweepJob):
        self._sweep = sweep

    @property
    def version(self) -> int:
        current, base = self._sweep._current_and_base()
        return base + (current.buffer.version if current is not None else 0)


class SweepJob(_Threaded):
    """A sweep (bar_core/sweep.py) as one job: its daemon thread trains the runs one after another,
    each a `Job` with its own live buffer, skipping finished runs and resuming stopped ones. It
    answers like a Job (state, snapshot, pause/resume/stop, run_dir, config) for the run it trains now;
    `progress` says which run that is, `outcomes` and `rows()` what the others did. Stop stops the
    current run (it keeps its checkpoint, state stopped) and ends the sweep; the same sweep started
    again continues it."""

    kind = "sweep"

    def __init__(self, plan, trainer_factory: Callable | None = None):
        self.plan = plan
        # a series (bar_core/series.py) trains named runs into the runs folder itself
        self.kind = getattr(plan, "kind", "sweep")
        self.name = getattr(plan, "name", None) or plan.folder.name
        self.sweep_dir: Path = plan.folder
        self.thread: threading.Thread | None = None
        self.current: Job | None = None
        # run name -> done | stopped | error (this job), skipped (done before), kept (error before), failed: why
        self.outcomes: dict[str, str] = {}
        self.summary: dict | None = None
        self.crash: str | None = None
        self.started_at: float | None = None
        self.buffer = _SweepBuffer(self)
        self._index: int | None = None
        self._version_base = 0
        self._final: str | None = None
        self._stop_requested = False
        self._pause_requested = False
        self._lock = threading.Lock()
        self._sweep_lock = None
        self._trainer_factory = trainer_factory

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> SweepJob:
        """Check the runs' folders and prepare the first run's data and teacher in the calling thread
        (bad input raises before anything is written), write sweep.json, then train in a thread."""
        from .sweep import TO_TRAIN
        from .trainer import Trainer

        status = self.plan.check_runs()
        todo = [r for r in self.plan.runs if status[r.name] in TO_TRAIN]
        if todo:
            (self._trainer_factory or Trainer)(todo[0].config).prepare()
        lock = self.plan.lock() if self.plan.exists else None  # before sweep.json changes
        try:
            if self.plan.needs_writing:
                self.plan.create()
            self._sweep_lock = lock or self.plan.lock()
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        self.started_at = time.time()
        self.thread = threading.Thread(target=self._run, name=f"bar-sweep-{self.name}", daemon=True)
        atexit.register(self._stop_at_exit)
        self.thread.start()
        return self

    def _current_and_base(self) -> tuple[Job | None, int]:
        with self._lock:
            return self.current, self._version_base

    def _run(self) -> None:
        from .sweep import TO_TRAIN

        try:
            for run in self.plan.runs:
                if self._stop_requested:
                    break
                with self._lock:
                    self._index = run.index
                try:
                    status = self.plan.run_status(run)
                    if status not in TO_TRAIN:
                        self.outcomes[run.name] = "skipped" if status == "done" else "kept"
                        continue
                    job = Job(run.config, self.sweep_dir, run.name, self._trainer_factory,
                              continue_run=self.plan.run_dir(run) if status == "resume" else None,
                              overwrite=status == "restart")
                    job.start()
                except USER_ERRORS as exc:
                    self.outcomes[run.name] = f"failed: {exc}"
                    continue
                with self._lock:
                    if self.current is not None:
                        self._version_base += self.current.buffer.version + 1
                    self.current = job
                if self._pause_requested:  # asked while this run was being prepared
                    job.pause()
                if self._stop_requested:
                    job.stop()
                job.join()
                self.outcomes[run.name] = job.state
                self.plan.write_csv()
                if job.state == "stopped":  # stopped from outside the sweep (interpreter exit): end it too
                    self._stop_requested = True
                    break
        except BaseException as exc:  # noqa: BLE001 - the thread must never die silently
            self.crash = f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            try:
                self.plan.write_csv()
            except Exception as exc:  # noqa: BLE001
                self.crash = self.crash or f"sweep.csv not written: {exc}"
            if self._sweep_lock is not None:
                self._sweep_lock.release()
            outcomes = list(self.outcomes.values())
            if self.crash:
                self._final = "error"
            elif self._stop_requested or "stopped" in outcomes:
                self._final = "stopped"
            elif any(o == "error" or o.startswith("failed") for o in outcomes):
                self._final = "error"
            else:
                self._final = "done"
            self.summary = {"state": self._final, "sweep_dir": str(self.sweep_dir), "runs": len(self.plan.runs),
                            "outcomes": dict(self.outcomes), "error": self.crash}
            atexit.unregister(self._stop_at_exit)

    def _stop_at_exit(self, timeout: float = 20.0) -> None:
        if self.alive:
            self.resume()
            self.stop()
            self.join(timeout)

    def pause(self) -> None:
        """Pause the current run; a run that starts while paused waits at its first step."""
        if self.active:
            self._pause_requested = True
            current = self.current
            if current is not None:
                current.pause()

    def resume(self) -> None:
        self._pause_requested = False
        current = self.current
        if current is not None:
            current.resume()

    def stop(self) -> None:
        """Stop the current run after its step (it saves a checkpoint) and start no other."""
        if self.alive:
            self._stop_requested = True
            current = self.current
            if current is not None:
                current.stop()

    # ---- state --------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """As a Job's: starting, running, paused, stopping while the thread lives (the current run's
        state, "running" between runs), then done, stopped or error (a run failed or the thread did)."""
        if self.thread is None:
            return "created"
        if self.alive:
            if self._stop_requested:
                return "stopping"
            current = self.current
            if current is not None and current.alive:
                return current.state
            if self._pause_requested:
                return "paused"
            return "starting" if current is None else "running"
        return self._final or "error"

    @property
    def run_dir(self) -> Path | None:
        """The current run's folder."""
        current = self.current
        return current.run_dir if current is not None else None

    @property
    def config(self) -> TrainConfig:
        """The current run's settings (the first run's before one starts)."""
        current = self.current
        return current.config if current is not None else self.plan.runs[0].config

    @property
    def progress(self) -> SweepProgress | None:
        """The run being trained (or trained last); None before the sweep reached its first run."""
        with self._lock:
            index, current = self._index, self.current
        if index is None:
            return None
        run = self.plan.runs[index]
        mine = current is not None and current.name == run.name
        state = current.state if mine else self.outcomes.get(run.name, "starting")
        run_dir = str(current.run_dir) if mine and current.run_dir is not None else None
        return SweepProgress(index=index, total=len(self.plan.runs), name=run.name, budget=run.budget,
                             seed=run.seed, state=state, run_dir=run_dir)

    def rows(self) -> list:
        """The runs-table rows (bar_core.catalog.RunRow) of every run of the sweep that has a folder."""
        return self.plan.rows()

    def finished_rows(self) -> list:
        """The rows of the runs that have ended (done, stopped or error)."""
        return [r for r in self.rows() if r.state in FINAL_STATES]

    def snapshot(self, max_points: int = DEFAULT_MAX_POINTS) -> RunSnapshot:
        """The current run's live snapshot (an empty one before the first run starts)."""
        current, base = self._current_and_base()
        if current is None:
            return RunSnapshot(source="live", state=self.state, error=self.crash, version=base)
        snap = current.snapshot(max_points)
        snap.version += base
        if self.crash and not snap.error:
            snap.error = self.crash
        return snap


class JobManager:
    """Holds the one current job. Thread-safe: the app calls it from every session's script thread."""

    def __init__(self, runs_root: str | os.PathLike | None = None):
        self.runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
        self._lock = threading.Lock()
        self._starting = False
        self.job: Job | None = None

    def _claim(self) -> None:
        with self._lock:
            if self._starting:
                raise JobBusy("a job is being prepared; wait for it")
            if self.job is not None and self.job.active:
                raise JobBusy(f"job {self.job.name!r} is {self.job.state}; stop it before starting another")
            self._starting = True

    def _launch(self, job):
        try:
            job.start()
            with self._lock:
                self.job = job
            return job
        finally:
            with self._lock:
                self._starting = False

    def start(self, config: TrainConfig | None, name: str | None = None, trainer_factory: Callable | None = None,
              continue_run: str | os.PathLike | None = None) -> Job:
        """Prepare and start a job (or continue the stopped run in `continue_run`, under the runs
        folder); JobBusy if one is being prepared or is still active."""
        self._claim()
        try:
            job = Job(config, self.runs_root, name, trainer_factory, continue_run=continue_run)
        except BaseException:
            with self._lock:
                self._starting = False
            raise
        return self._launch(job)

    def start_sweep(self, config: TrainConfig | None, budgets: Sequence[float] | None = None,
                    seeds: Sequence[int] | None = None, name: str | None = None,
                    trainer_factory: Callable | None = None) -> SweepJob:
        """Start a sweep as one job: a run of `config` per (budget, seed), in the sweep folder `name`
        under the runs folder (default: sweep-<model>-<dataset>-<time>). Seeds default to
        [config.seed]. A sweep folder that exists is continued (done runs skipped, stopped ones
        resumed) and grows by new budgets or seeds; other settings are refused. With config=None and
        no budgets or seeds, the sweep `name` continues as its sweep.json asks. ConfigError or
        RunFolderError (one line) before anything is written; JobBusy if a job is active."""
        from .sweep import SweepPlan, default_sweep_name

        self._claim()
        try:
            if config is None:
                if name is None or budgets is not None or seeds is not None:
                    raise ConfigError("to continue a sweep give its name alone; to start one give settings and budgets")
                plan = SweepPlan.load(safe_run_dir(self.runs_root, name))
            else:
                if budgets is None:
                    raise ConfigError("a sweep needs budgets, e.g. [0.5, 0.25]")
                auto, name = name is None, name or default_sweep_name(config)
                path = safe_run_dir(self.runs_root, name)
                base, k = name, 2
                while auto and path.exists():  # two starts within a second: name-2, name-3, ...
                    name, k = f"{base}-{k}", k + 1
                    path = safe_run_dir(self.runs_root, name)
                plan = SweepPlan.open(path, config, budgets, seeds if seeds is not None else [config.seed],
                                      options={"started_by": "app"})
            job = SweepJob(plan, trainer_factory)
        except BaseException:
            with self._lock:
                self._starting = False
            raise
        return self._launch(job)

    def start_series(self, runs: Sequence[tuple[str, TrainConfig]], title: str,
                     trainer_factory: Callable | None = None) -> SweepJob:
        """Train `runs` ((name, settings) pairs) one after another as one job, each an ordinary run
        folder in the runs folder (bar_core/series.py). ConfigError or RunFolderError (one line) before
        anything is written; JobBusy if a job is active."""
        from .series import SeriesPlan

        self._claim()
        try:
            job = SweepJob(SeriesPlan(self.runs_root, runs, title), trainer_factory)
        except BaseException:
            with self._lock:
                self._starting = False
            raise
        return self._launch(job)

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._starting or (self.job is not None and self.job.active)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the current job (if any) and wait for its thread; used on cache release and in tests."""
        job = self.job
        if job is not None:
            job.resume()
            job.stop()
            job.join(timeout)
