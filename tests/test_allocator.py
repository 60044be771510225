"""The malloc tuning (bar_core/allocator.py) where the dashboard needs it: training in a thread other
than the main one must not page-fault its activations in again at every step.

Each case runs in a fresh interpreter: malloc settings are per process and stick once made."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Training steps of the quick demo's network (ResNet-8, batch 128, 28x28) in a background thread, as
# the app's job runs them; prints the minor page faults of each step after three warm-up steps.
SCRIPT = r"""
import resource, sys, threading, torch
sys.path.insert(0, sys.argv[1])
from bar_core.allocator import tune_malloc
from bar_core.models import build_model
print("tuned" if tune_malloc() else "untuned")
torch.set_num_threads(2)
torch.manual_seed(0)
model = build_model("resnet8", 1, 10)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
faults = []

def train():
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

worker = threading.Thread(target=train)
worker.start()
worker.join()
print(*faults[3:])
"""

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the tuning is for glibc's malloc")


def faults_per_step(tune: bool) -> tuple[str, list[int]]:
    env = {**os.environ, "BAR_TUNE_MALLOC": "1" if tune else "0"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split("\n")
    return out[0], [int(v) for v in out[1].split()]


def test_a_training_thread_reuses_its_activation_memory():
    state, faults = faults_per_step(tune=True)
    assert state == "tuned"
    # One step's activations are ~100 MiB (~25,000 pages). Now and then a step still maps a little
    # new memory (a new peak); the typical step maps none.
    assert statistics.median(faults) < 1_000, faults


def test_without_the_tuning_the_same_thread_faults_every_step():
    """The measurement above can tell the difference: glibc left alone unmaps the thread's free heaps."""
    state, faults = faults_per_step(tune=False)
    assert state == "untuned"
    assert statistics.median(faults) > 5_000, faults
