"""Checkpoints: written atomically, read with `weights_only=True`, checked against what they claim.

A teacher checkpoint holds a dense network's state_dict and what it was trained for; a run
checkpoint holds the gated student, its optimisers and where training stood.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

ASSETS = Path(__file__).resolve().parent / "assets"  # package data: the shipped teachers
TEACHER_FORMAT = "bar-teacher/1"
RUN_FORMAT = "bar-run/1"


class CheckpointError(ValueError):
    """A missing, corrupt or mismatched checkpoint; the message says which and why, in one line."""


def atomic_write(path: str | os.PathLike, write, mode: str = "wb") -> None:
    """Call write(file) on a temporary file beside `path`, fsync, then rename it over `path`.

    A crash mid-write leaves the previous file intact, never a truncated one. The file gets the
    usual permissions (0666 minus the umask), not mkstemp's private 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write or flush of the open file names none: the one being replaced
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """torch.save, atomically (see atomic_write)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_file(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{what} {str(path)!r} is corrupt or not a torch checkpoint ({first[:120]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {str(path)!r} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def default_teacher_path(model: str, dataset: str) -> Path:
    return ASSETS / "teachers" / f"{model}-{dataset}.pt"


def save_teacher(model: nn.Module, path: str | os.PathLike, *, model_name: str, dataset: str,
                 in_channels: int, num_classes: int, accuracy: float, extra: dict | None = None) -> None:
    save_atomic({"format": TEACHER_FORMAT, "model": model_name, "dataset": dataset, "in_channels": in_channels,
                 "num_classes": num_classes, "accuracy": float(accuracy), "extra": extra or {},
                 "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


def load_teacher(path: str | os.PathLike, model_name: str, in_channels: int, num_classes: int) -> dict:
    """Read a teacher checkpoint and check that it is for this architecture and data shape."""
    ckpt = load_file(path, "teacher checkpoint")
    if "state_dict" not in ckpt:
        raise CheckpointError(f"teacher checkpoint {str(path)!r} has no state_dict")
    for key, want in (("model", model_name), ("in_channels", in_channels), ("num_classes", num_classes)):
        if key in ckpt and ckpt[key] != want:
            raise CheckpointError(f"teacher checkpoint {str(path)!r} is for {key}={ckpt[key]!r}, "
                                  f"but this run needs {key}={want!r}")
    bad = next((k for k, v in ckpt["state_dict"].items()
                if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # it would train a NaN network without a word until the first loss
        raise CheckpointError(f"teacher checkpoint {str(path)!r} holds NaN or infinite values in {bad!r}")
    return ckpt


def load_weights(module: nn.Module, state_dict: dict, source: str, *, allow_missing_gates: bool = False) -> None:
    """load_state_dict with a one-line error on any shape or key mismatch.

    A dense teacher's weights load into a gated student: the gates' log α are the only keys allowed
    to be missing (they keep their initial value)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not (allow_missing_gates and k.endswith("gate.log_alpha"))]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in state_dict if k in own and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatch(es), e.g. {k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise CheckpointError(f"{source} does not fit this model: {'; '.join(parts)}")
    module.load_state_dict(state_dict, strict=False)
