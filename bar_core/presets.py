"""Named starting points, declared once: the CLI's `--preset NAME` and the dashboard's Preset box
read this table (the dashboard adds its two-run lesson, BAR then L0, on top).

A preset is a whole TrainConfig; options given with it override its values.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError, TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str           # `--preset NAME`
    label: str          # the dashboard's Preset box
    config: TrainConfig


_PRESETS: tuple[Preset, ...] = (
    Preset("quick", "Quick demo (a minute on a CPU)", TrainConfig()),
    # the schedule of the reference re-implementation (bar-method.md §5) on the paper's WRN-16-8 at B = 1/8
    Preset("paper", "Paper-like (WRN-16-k on CIFAR-10, GPU)",
           TrainConfig(model="wrn16_8", dataset="cifar10", teacher="none", budget=0.125, pretrain_epochs=90,
                       prune_epochs=80, finetune_epochs=50, batch_size=64, lr=1e-3, finetune_lr=1e-4, lam=1e-5,
                       gate_lr=0.01, gate_init=3.0, augment=True, device="auto", extra_prune_steps=2000)),
    Preset("smoke", "Smoke test (synthetic data, seconds)",
           TrainConfig(dataset="synthetic", teacher="none", pretrain_epochs=1, prune_epochs=2, finetune_epochs=1,
                       max_steps_per_epoch=10, batch_size=64, gate_lr=0.2, lam=5e-5, threads=1)),
)
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def preset(name: str) -> Preset:
    """The preset called `name`; a ConfigError listing the names if there is none."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]
