"""How long a set-up would train here: the images it will see, over this machine's measured speed.

The speed is measured, not guessed: a few training steps of the gated model on random input of the
dataset's shape, on the device the run would use. A CPU-only machine asked for a GPU preset (WRN-16-8 on
CIFAR-10 for 220 epochs) then reads "about 9 days" before Start rather than finding out after.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .config import TrainConfig
from .data import dataset_info
from .models import build_model
from .precision import autocast


@dataclass(frozen=True)
class Estimate:
    seconds: float           # the whole run (every phase), at the measured speed
    images_per_s: float      # measured training speed of the gated model here
    images: int              # training images the run will see
    epochs: int
    device: str

    def text(self) -> str:
        return (f"about {duration_text(self.seconds)} ({self.epochs} epochs, {self.images:,} training images at "
                f"~{self.images_per_s:,.0f} images/s measured on this machine's {self.device.upper()})")


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def measure_speed(model: str, in_channels: int, num_classes: int, image_size: tuple[int, int], batch: int,
                  device: str = "cpu", channels_last: bool = True, steps: int = 2, precision: str = "fp32") -> float:
    """Training images/s of the gated `model`: forward, backward and an Adam step on random input
    (one warm-up step, then the fastest of `steps` timed ones). The global random generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_model(model, in_channels, num_classes).to(device)
        x = torch.randn(batch, in_channels, *image_size, device=device)
        if channels_last:
            net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, num_classes, (batch,), device=device)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        net.train()

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast(torch.device(device), precision):
                logits = net(x).float()
            torch.nn.functional.cross_entropy(logits, y).backward()
            opt.step()

        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        fastest = math.inf
        for _ in range(steps):  # the fastest step: a moment of contention must not make a minute read as hours
            t0 = time.perf_counter()
            step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            fastest = min(fastest, time.perf_counter() - t0)
        return batch / fastest


def training_images(cfg: TrainConfig) -> tuple[int, int] | None:
    """(epochs, images) the run will train on; None when the dataset's size is not known beforehand."""
    info = dataset_info(cfg.dataset)
    if info.train_size is None:
        return None
    per_epoch = min(info.train_size, cfg.train_limit or info.train_size)
    if cfg.max_steps_per_epoch:
        per_epoch = min(per_epoch, cfg.max_steps_per_epoch * cfg.batch_size)
    epochs = cfg.prune_epochs + cfg.finetune_epochs + (cfg.pretrain_epochs if cfg.teacher == "none" else 0)
    return epochs, epochs * per_epoch


def estimate(cfg: TrainConfig, device: str | None = None, batch: int = 16) -> Estimate | None:
    """The run's training time here at the measured speed (evaluation not counted)."""
    seen = training_images(cfg)
    info = dataset_info(cfg.dataset)
    if seen is None or info.num_classes is None:
        return None
    if device is None:
        device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else (
            "cpu" if cfg.device == "auto" else cfg.device)
    speed = measure_speed(cfg.model, info.in_channels, info.num_classes, info.image_size,
                          min(batch, cfg.batch_size), device, cfg.channels_last, precision=cfg.precision)
    epochs, images = seen
    return Estimate(seconds=images / speed if speed > 0 else math.inf, images_per_s=speed, images=images,
                    epochs=epochs, device=device.split(":")[0])
