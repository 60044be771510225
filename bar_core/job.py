"""Job threads: one training job in a background thread, and the manager that owns it.

The trainer runs in the job's daemon thread and pushes its records to the run folder and to the job's
`LiveBuffer` (bar_core/history.py); readers call `Job.snapshot()`. Run folders, their names and the
history live elsewhere (runs.py, history.py); this module holds the threads and their states.

`JobManager` owns at most one active job: a second `start` while one is preparing or running raises
`JobBusy` and never starts a second trainer. Nothing here imports streamlit; the app keeps one
`JobManager` in `st.cache_resource` so that every tab and every reload sees the same job.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
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


class Job:
    """One BAR run in a daemon thread. `start()` prepares the trainer in the calling thread (so bad
    input raises a one-line error before anything is created), creates the run folder, then trains."""

    def __init__(self, config: TrainConfig | None, runs_root: str | os.PathLike | None = None,
                 name: str | None = None, trainer_factory: Callable | None = None,
                 continue_run: str | os.PathLike | None = None):
        """`continue_run`: the folder of a stopped run under `runs_root` to continue with its own
        settings (config and name are taken from it)."""
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
        if holds_run(path):
            raise RunFolderError(f"a run named {self.name!r} already exists in {str(self.runs_root)!r}; "
                                 f"choose another name")
        trainer = (self._trainer_factory or Trainer)(cfg)
        trainer.prepare()                      # bad data, teacher or settings raise here
        self.folder = RunFolder.create(path, cfg)
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

    def join(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.alive

    # ---- state --------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

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
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def run_dir(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    def snapshot(self, max_points: int = DEFAULT_MAX_POINTS) -> RunSnapshot:
        return self.buffer.snapshot(self.state, max_points, source="live",
                                    run_dir=str(self.run_dir) if self.run_dir else None, error=self.crash)


class JobManager:
    """Holds the one current job. Thread-safe: the app calls it from every session's script thread."""

    def __init__(self, runs_root: str | os.PathLike | None = None):
        self.runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
        self._lock = threading.Lock()
        self._starting = False
        self.job: Job | None = None

    def start(self, config: TrainConfig | None, name: str | None = None, trainer_factory: Callable | None = None,
              continue_run: str | os.PathLike | None = None) -> Job:
        """Prepare and start a job (or continue the stopped run in `continue_run`, under the runs
        folder); JobBusy if one is being prepared or is still active."""
        with self._lock:
            if self._starting:
                raise JobBusy("a job is being prepared; wait for it")
            if self.job is not None and self.job.active:
                raise JobBusy(f"job {self.job.name!r} is {self.job.state}; stop it before starting another")
            self._starting = True
        try:
            job = Job(config, self.runs_root, name, trainer_factory, continue_run=continue_run)
            job.start()
            with self._lock:
                self.job = job
            return job
        finally:
            with self._lock:
                self._starting = False

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
