"""The malloc tuning (bar_core/allocator.py) where the dashboard needs it: training in a thread other
than the main one must not page-fault its activations in again at every step.

Each case runs in a fresh interpreter: malloc settings are per process and stick once made."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys

import pytest

# Training steps of the quick demo's network (ResNet-8, batch 128, 28x28) in a background thread, as
# the app's job runs them; prints the minor page faults of each step after three warm-up steps.
SCRIPT = r"""
import ctypes, resource, sys, threading, torch
from bar_core.allocator import tune_malloc
from bar_core.models import build_model
print("tuned" if tune_malloc() else "untuned")
torch.set_num_threads(2)
torch.manual_seed(0)
model = build_model("resnet8", 1, 10)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
faults = []

def step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

def train():
    for _ in range(10):
        step()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand all free memory back: the next step must fault it in
    step()

worker = threading.Thread(target=train)
worker.start()
worker.join()
print(*faults[3:10])
print(faults[10])
"""

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the tuning is for glibc's malloc")


def test_a_training_thread_reuses_its_activation_memory():
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**os.environ, "BAR_TUNE_MALLOC": "1"},
                         capture_output=True, text=True, timeout=300, check=True).stdout.split("\n")
    assert out[0] == "tuned"
    faults, after_trim = [int(v) for v in out[1].split()], int(out[2])
    # One step's activations are ~100 MiB (~25,000 pages). Now and then a step still maps a little
    # new memory (a new peak); the typical step maps none.
    assert statistics.median(faults) < 1_000, faults
    # ... and the count sees memory that has to come back: after malloc_trim the next step faults it in
    assert after_trim > 5_000, after_trim
