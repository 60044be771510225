"""BAR Explorer's library: Budget-Aware Regularization (Lemaire, Achkar, Jodoin, CVPR 2019) for PyTorch.

Every feature map of a network gets a learnable Hard Concrete gate; a sparsity loss, multiplied by a
barrier f(V, a, b), pushes P(gate > 0) down while the activation volume V of the surviving maps stays
under a budget b that moves from V0 down to the final budget B·V0. What survives becomes a physically
smaller network.

    import bar_core
    cfg = bar_core.TrainConfig(budget=1/4, prune_epochs=2, finetune_epochs=1)
    trainer = bar_core.Trainer(cfg)                # shipped Fashion-MNIST subset and teacher, offline
    summary = trainer.run()                         # {"volume_ratio": ..., "pruned_accuracy": ..., ...}
    pruned = bar_core.materialize(trainer.student)  # the smaller network, same logits

The library never imports streamlit: the dashboard (`bar app`, package `bar_app`) talks to it through
a `JobManager`, the trainer's records and run folders.
"""
from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.8.0"

# The public API, imported on first use (PEP 562): `from bar_core.export import load_pruned` must not
# load the training code, and `bar --help` should not wait for every module.
_MODULES = {  # module: the public names it holds
    "barrier": "barrier barrier_start budget_at capped_barrier schedule_progress",
    "catalog": "RunRow scan_runs run_row rows_frame rename_run delete_run",
    "config": "ConfigError TrainConfig SETTINGS",
    "connectivity": "analyze",
    "cost": "compare count_macs count_params",
    "data": "DataError describe_datasets load_data",
    "export": "ExportError export_onnx export_torch load_pruned save_pruned",
    "export_files": "FigureExportError png_bytes html_text csv_text run_zip_bytes write_run_zip",
    "figures": "run_figures run_tables pareto_figure",
    "report": "write_report",
    "hard_concrete": "HardConcreteGate icdf prob_open test_gate",
    "history": "RunSnapshot snapshot_from_run",
    "job": "Job JobManager SweepJob",
    "materialize": "materialize",
    "pruned": "MaterializeError PrunedNet",
    "presets": "PRESETS preset",
    "models": "ModelError build_model describe_models",
    "records": "StartRecord PhaseRecord StepRecord EpochRecord StatusRecord MessageRecord EndRecord",
    "runs": "RunData RunFolder RunFolderError load_run read_records",
    "sweep": "SweepPlan parse_budgets parse_seeds",
    "trainer": "Trainer TrainingError",
}
_API = {name: module for module, names in _MODULES.items() for name in names.split()}

__all__ = [
    "__version__",
    # settings and training
    "TrainConfig", "SETTINGS", "ConfigError", "PRESETS", "preset", "Trainer", "TrainingError", "Job", "JobManager",
    # many runs: sweeps and the runs table
    "SweepPlan", "SweepJob", "parse_budgets", "parse_seeds", "RunRow", "scan_runs", "run_row", "rows_frame",
    "rename_run", "delete_run",
    # figures, exports and reports
    "run_figures", "run_tables", "pareto_figure", "png_bytes", "html_text", "csv_text", "run_zip_bytes",
    "write_run_zip", "FigureExportError", "write_report",
    # models and data
    "build_model", "describe_models", "ModelError", "load_data", "describe_datasets", "DataError",
    # the method's math
    "HardConcreteGate", "prob_open", "icdf", "test_gate", "barrier", "capped_barrier", "barrier_start",
    "budget_at", "schedule_progress",
    # run folders and their history
    "RunFolder", "RunData", "RunFolderError", "load_run", "read_records", "RunSnapshot", "snapshot_from_run",
    "StartRecord", "PhaseRecord", "StepRecord", "EpochRecord", "StatusRecord", "MessageRecord", "EndRecord",
    # the pruned network
    "analyze", "materialize", "PrunedNet", "MaterializeError", "save_pruned", "load_pruned", "export_torch",
    "export_onnx", "ExportError", "count_macs", "count_params", "compare",
]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'bar_core' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .barrier import barrier, barrier_start, budget_at, capped_barrier, schedule_progress
    from .catalog import RunRow, delete_run, rename_run, rows_frame, run_row, scan_runs
    from .config import SETTINGS, ConfigError, TrainConfig
    from .connectivity import analyze
    from .cost import compare, count_macs, count_params
    from .data import DataError, describe_datasets, load_data
    from .export import ExportError, export_onnx, export_torch, load_pruned, save_pruned
    from .export_files import FigureExportError, csv_text, html_text, png_bytes, run_zip_bytes, write_run_zip
    from .figures import pareto_figure, run_figures, run_tables
    from .hard_concrete import HardConcreteGate, icdf, prob_open, test_gate
    from .history import RunSnapshot, snapshot_from_run
    from .job import Job, JobManager, SweepJob
    from .materialize import materialize
    from .models import ModelError, build_model, describe_models
    from .pruned import MaterializeError, PrunedNet
    from .records import EndRecord, EpochRecord, MessageRecord, PhaseRecord, StartRecord, StatusRecord, StepRecord
    from .report import write_report
    from .runs import RunData, RunFolder, RunFolderError, load_run, read_records
    from .sweep import SweepPlan, parse_budgets, parse_seeds
    from .trainer import Trainer, TrainingError


class _Package(types.ModuleType):
    """`bar_core.materialize` and `bar_core.barrier` are functions of the public API, and also the
    names of the modules that hold them: once such a module is imported, Python sets the package's
    attribute to the module; this hands out the function instead."""

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if isinstance(value, types.ModuleType) and _API.get(name) == name:
            return getattr(value, name)
        return value


sys.modules[__name__].__class__ = _Package
