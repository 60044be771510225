"""What several test files share: a seconds-long config, waiting, ports, and networks with random
weights and gates whose pruned twin must compute the same logits."""
from __future__ import annotations

import math
import socket
import time

import torch
from torch import nn

from bar_core.config import SETTING, TrainConfig
from bar_core.hard_concrete import closed_threshold
from bar_core.models import GatedBatchNorm2d, build_model, gates

THRESHOLD = closed_threshold()  # −ln 11: ẑ > 0 above it


def tiny_config(**changes) -> TrainConfig:
    """Seconds on one CPU thread: synthetic data, no teacher to load, a few capped epochs."""
    base = dict(dataset="synthetic", teacher="none", pretrain_epochs=1, prune_epochs=2, finetune_epochs=1,
                max_steps_per_epoch=5, batch_size=32, test_limit=200, threads=1, gate_lr=0.2, lam=5e-5,
                extra_prune_steps=20)
    method = changes.get("method", "bar")
    base = {k: v for k, v in base.items() if SETTING[k].used_by(method)}  # another method's would be refused
    base.update(changes)
    return TrainConfig(**base)


def wait_for(cond, timeout: float = 60.0, what: str = "condition", every: float = 0.05):
    """Poll `cond()` until it returns something truthy (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def randomize_weights(model: nn.Module, seed: int) -> None:
    """Random BN statistics and affine parameters and a random classifier, so that every channel
    (and every BN constant) matters: a wrong slice or a missing ẑ shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g) * 0.4 + 1.0)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features) * 3)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def random_gates(model: nn.Module, seed: int, p_closed: float = 0.5) -> None:
    """log α per channel: closed ones below −ln 11, open ones spread over (−ln 11, +3] so that many
    have 0 < ẑ < 1 (ẑ = 1 needs log α ≥ ln 11 ≈ 2.4)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, gate in gates(model):
            n = gate.num_channels
            closed = torch.rand(n, generator=g) < p_closed
            low = THRESHOLD - 0.01 - 3 * torch.rand(n, generator=g)
            high = THRESHOLD + 0.01 + 5.4 * torch.rand(n, generator=g)
            gate.log_alpha.copy_(torch.where(closed, low, high))


def set_open(model: nn.Module, layer: str, channels, value: float = 4.0) -> None:
    """Open exactly `channels` of gated BN `layer` (at log α = value), close the rest."""
    gate = dict(model.named_modules())[layer].gate
    with torch.no_grad():
        gate.log_alpha.fill_(-6.0)
        gate.log_alpha[list(channels)] = value


def gated_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, GatedBatchNorm2d)]


def max_error(model: nn.Module, pruned: nn.Module, in_channels: int, size: int = 32, seed: int = 0) -> tuple[float, float]:
    """(max |gated − pruned| over the logits, std of the gated logits) on random inputs."""
    x = torch.randn(3, in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        ref, out = model(x), pruned(x)
    assert out.shape == ref.shape
    return float((ref - out).abs().max()), float(ref.std())


def make(name: str, in_channels: int, seed: int, p_closed: float = 0.5) -> nn.Module:
    model = build_model(name, in_channels, 10)
    randomize_weights(model, seed)
    random_gates(model, seed + 1, p_closed)
    return model.eval()


def as_text(markdown: str) -> str:
    """What a reader sees of markdown made by bar_app.text.literal: backslash escapes and the
    invisible word joiners undone (AppTest gives an element's markdown source)."""
    import re

    from bar_app.text import shown
    return shown(re.sub(r"\\(.)", r"\1", markdown))
