"""The arithmetic of a training step, declared once: float32 throughout, or bf16 autocast.

Under bf16 autocast the convolutions and the linear layer run in bfloat16 (tensor cores on recent
GPUs); the gated BatchNorm keeps bf16 maps bf16 with float32 statistics (models/gated.py); the loss,
the gates, the optimiser and every saved weight stay float32, and evaluation runs in float32.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}  # None: no autocast
DEFAULT_PRECISION = "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context a training step's forward runs in: `torch.autocast` for bf16, nothing for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
