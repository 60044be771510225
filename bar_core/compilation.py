"""torch.compile for the training step, declared once: off, or the torch.compile backend to use.

Only the network that trains is compiled, as a wrapper sharing its parameters: the module itself
stays plain, so checkpoints, copies, `materialize` and evaluation see the network they always do.
"""
from __future__ import annotations

import shutil

import torch
from torch import nn

# off; inductor (generated kernels: Triton on CUDA, C++ on CPU); aot_eager (traced, no code generated)
COMPILE_BACKENDS: tuple[str, ...] = ("off", "inductor", "aot_eager")


def compile_problem(backend: str, device: torch.device) -> str | None:
    """Why `backend` cannot compile on `device` here (one line), or None."""
    if backend == "inductor" and device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return ("compile inductor on a CPU needs a C++ compiler and none was found (install g++), "
                "or use compile aot_eager or off")
    return None


def for_training(model: nn.Module, backend: str) -> nn.Module:
    """`model` itself when backend is off, else a compiled wrapper that shares its parameters."""
    return model if backend == "off" else torch.compile(model, backend=backend)
