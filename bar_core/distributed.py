"""Data-parallel training under torchrun: `torchrun --nproc-per-node N -m bar_core train ...`.

torchrun starts N copies of `bar train` and sets RANK, WORLD_SIZE and LOCAL_RANK in each. Every rank
loads the same data, models and checkpoint, takes its 1/N shard of each global batch (`--batch-size`
is the global batch) and trains the model wrapped in DistributedDataParallel, which averages the
gradients over the ranks: parameters start equal (DDP broadcasts rank 0's) and every optimiser step is
the same, so the weights, every log α and with them V stay equal on every rank; `check_in_sync`
verifies that at each epoch end. Only rank 0 writes the run folder and prints.

Without torchrun (or with one rank) every function here is a no-op and nothing is initialised.

The student's gated BatchNorms take their statistics over the whole global batch (all-reduced, see
models/gated.py) and each rank draws the gate noise of the whole global batch and keeps its rows, so
N ranks compute the single-process step up to float rounding. The teacher, when a run pretrains one,
uses plain BatchNorm: per-rank statistics, with rank 0's running statistics broadcast by DDP.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError

# Set by a signal handler under torchrun; it becomes a stop on every rank at the same step (agree_to_stop).
_stop_requested = False


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main() -> bool:
    """Rank 0, or no torchrun: the process that writes the run folder and prints."""
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def check_batch_size(batch_size: int) -> None:
    """The global batch must split into equal shards: the averaged gradients then equal the global mean's."""
    n = world_size()
    if n > 1 and batch_size % n:
        raise ConfigError(f"--batch-size {batch_size} does not split evenly over {n} torchrun ranks; use a "
                          f"multiple of {n} (it is the global batch, each rank trains on batch_size / {n})")


def init(device: torch.device) -> None:
    """Join torchrun's process group: NCCL with one GPU per local rank on CUDA, gloo on CPU."""
    if world_size() <= 1 or active():
        return
    if device.type == "cuda":
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(f"torchrun local rank {local_rank()} has no GPU ({torch.cuda.device_count()} here); "
                              f"start at most one process per GPU")
        torch.cuda.set_device(local_rank())  # "cuda" then means this rank's GPU everywhere in the trainer
        backend = "nccl"
    else:
        backend = "gloo"
    # a rank that died leaves the others waiting in a collective: fail after 10 minutes, not 30
    dist.init_process_group(backend, timeout=timedelta(minutes=10))


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_agree(ok: bool) -> bool:
    """True when `ok` holds on every rank (a set-up step that only rank 0 does, say)."""
    if not active():
        return ok
    t = torch.tensor([int(bool(ok))], device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def wrap(model: nn.Module) -> nn.Module:
    """The model that trains: under torchrun, in DistributedDataParallel (built per phase, since the
    parameters that train differ: the fine-tune phase freezes the gates)."""
    if not active():
        return model
    from .models.gated import GatedBatchNorm2d

    for m in model.modules():
        if isinstance(m, GatedBatchNorm2d):
            m.sync = True
    model.bar_shard = (dist.get_rank(), dist.get_world_size())  # gate noise: this rank's rows of the global batch's
    device_ids = [torch.cuda.current_device()] if dist.get_backend() == "nccl" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def shard(batch):
    """This rank's slice of a global batch (x, y, ...), the same slice of the same batch on every epoch."""
    if not active():
        return batch
    n, r = dist.get_world_size(), dist.get_rank()
    size = batch[0].shape[0] // n
    return tuple(t[r * size:(r + 1) * size] for t in batch)


def request_stop() -> None:
    global _stop_requested
    _stop_requested = True


def agree_to_stop() -> bool:
    """Whether any rank has been asked to stop: called before every step, so all ranks stop at the same one."""
    if not active():
        return False
    t = torch.tensor([int(_stop_requested)], device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def reduce_record(record):
    """A step or epoch record with its training losses averaged over the ranks (the global batch's mean)
    and images/s summed; everything else in it is rank 0's (equal on all ranks, or rank 0's BN state)."""
    if not active() or record.kind not in ("step", "epoch"):
        return record
    names = ("loss", "loss_data", "images_per_s") if record.kind == "step" else ("train_loss",)
    values = torch.tensor([float(getattr(record, n)) for n in names], dtype=torch.float64, device=_device())
    dist.all_reduce(values)
    values = values.tolist()
    n = dist.get_world_size()
    return replace(record, **{name: v if name == "images_per_s" else v / n for name, v in zip(names, values)})


def _digest(tensors) -> int:
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


def check_in_sync(model: nn.Module) -> None:
    """Fail loudly when the ranks' gates (log α) or weights differ: V would then differ between them."""
    if not active():
        return
    from .models import gate_parameters, weight_parameters
    from .trainer import TrainingError

    mine = torch.tensor([_digest(gate_parameters(model)), _digest(weight_parameters(model))], device=_device())
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    for what, i in (("gates (log alpha)", 0), ("weights", 1)):
        if len({int(t[i]) for t in every}) > 1:
            raise TrainingError(f"torchrun ranks disagree on the {what}; the run is no longer data-parallel")


def save_rank_gates(model: nn.Module, folder: str) -> None:
    """Every rank's final log α as gates-rank<r>.npz in `folder` (BAR_RANK_GATES): compare ranks after a run."""
    from .models import gates
    os.makedirs(folder, exist_ok=True)
    arrays = {name: g.log_alpha.detach().float().cpu().numpy() for name, g in gates(model)}
    np.savez(os.path.join(folder, f"gates-rank{rank()}.npz"), **arrays)
