"""Shared fixtures: one torch thread, a private runs folder. Helpers that tests import: tests/helpers.py."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """BAR_RUNS_DIR pointed at a fresh folder, so no test writes under the repository's runs/."""
    path = tmp_path / "runs"
    monkeypatch.setenv("BAR_RUNS_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """In-process tests use one torch thread: with anything else busy on a 2-core machine a second
    OpenMP thread makes small ops wait at a barrier (up to 100x slower). Benchmarks and the
    subprocesses of the end-to-end tests keep their own setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for a module's PNG exports (kaleido; starting one takes seconds)."""
    from bar_core import export_files
    if export_files.find_chromium() is None:
        pytest.skip("Chromium is not installed (make test installs it: apt install chromium)")
    with export_files.RENDERER.session() as renderer:
        yield renderer
