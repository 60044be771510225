"""Train the dense network that BAR then prunes (the teacher), and save it as a checkpoint."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import save_teacher
from .data import load_data
from .models import build_model
from .trainer import evaluate


def train_teacher(model_name: str, dataset: str, out: str | Path, *, data_root: str | None = None,
                  epochs: int = 15, lr: float = 2e-3, batch_size: int = 128, weight_decay: float = 5e-4,
                  augment: bool = False, seed: int = 0, threads: int | None = None,
                  channels_last: bool = True, log: Callable[[str], None] = lambda msg: None) -> dict:
    """Adam with cosine decay; deterministic for a seed on CPU. Returns {"accuracy", "epochs"}."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = load_data(dataset, data_root, seed=seed)
    spec = data.spec
    model = build_model(model_name, spec.in_channels, spec.num_classes, gated=False)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = data.num_train_batches(batch_size)
    total, step = epochs * steps_per_epoch, 0
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        torch.manual_seed(seed * 100_003 + epoch)
        for x, y in data.train_batches(batch_size, seed=seed, epoch=epoch, augment=augment):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        accuracy, test_loss = evaluate(model, data, torch.device("cpu"), channels_last)
        log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, test accuracy {100 * accuracy:.2f}%")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.to(memory_format=torch.contiguous_format)
    save_teacher(model, out, model_name=model_name, dataset=dataset, in_channels=spec.in_channels,
                 num_classes=spec.num_classes, accuracy=accuracy,
                 extra={"epochs": epochs, "lr": lr, "batch_size": batch_size, "augment": augment, "seed": seed,
                        "torch": str(torch.__version__)})
    return {"accuracy": accuracy, "epochs": epochs}
