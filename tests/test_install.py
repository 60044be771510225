"""The package as a user installs it: `pip install <repo>` into a new venv, then used from another folder.

The new venv borrows the heavy dependencies (torch, streamlit, ...) from the project's .venv through a
.pth line instead of installing them again (gigabytes), and pip runs with --no-index: the install needs
no network, and if pyproject.toml asked for anything the project's pins do not provide, pip fails here.
The project itself is built from a copy of the repository's files, so nothing is written into the
checkout, and it is imported from the new venv's site-packages, not from the source tree.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _repository_copy(dest: Path) -> Path:
    """The files git tracks (and untracked, unignored ones), as a fresh clone would hold them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, bin folder, environment) of a new venv holding the installed package."""
    root = tmp_path_factory.mktemp("install")
    source = _repository_copy(root / "source")
    venv = root / "venv"
    # Without a pip (and setuptools) of its own: the project's pip installs into it (`pip --python`), and
    # the build uses the project's pinned setuptools rather than the old one ensurepip would bundle.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                           "--no-build-isolation", str(source)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return python, venv / "bin", env, site


def test_public_api_imports_from_the_installed_package(installed, tmp_path):
    python, _, env, site = installed
    code = ("import json, sys, bar_core\n"
            "from bar_core import (TrainConfig, Trainer, build_model, materialize, save_pruned, load_pruned,\n"
            "                      load_run, snapshot_from_run, JobManager)\n"
            "missing = [n for n in bar_core.__all__ if not hasattr(bar_core, n)]\n"
            "undocumented = [n for n in bar_core.__all__ if n != '__version__' and not getattr(bar_core, n).__doc__]\n"
            "print(json.dumps({'file': bar_core.__file__, 'version': bar_core.__version__, 'missing': missing,\n"
            "                  'undocumented': undocumented, 'streamlit': 'streamlit' in sys.modules}))\n")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).is_relative_to(site), f"imported from {info['file']}, not the installed copy"
    assert info["version"] == subprocess.run([sys.executable, "-c", "import bar_core; print(bar_core.__version__)"],
                                             capture_output=True, text=True, check=True).stdout.strip()
    assert info["missing"] == [] and info["undocumented"] == []
    assert info["streamlit"] is False, "the library never imports streamlit"
    for data in ("assets/fashion-mnist-subset.npz", "assets/teachers/resnet8-fashion-mnist-subset.pt",
                 "assets/FASHION-MNIST-LICENSE.txt"):
        assert (site / "bar_core" / data).is_file(), f"{data} is not installed as package data"


def test_bar_train_runs_offline_from_another_folder(installed, tmp_path):
    python, bindir, env, _ = installed
    out = tmp_path / "run"
    done = subprocess.run([str(bindir / "bar"), "train", "--max-steps-per-epoch", "2", "--prune-epochs", "1",
                           "--finetune-epochs", "1", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env={**env, "BAR_RUNS_DIR": str(tmp_path / "runs")},
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "done" and summary["steps"] >= 4  # 2 prune + extra prune steps + 2 fine-tune
    assert 0.0 < summary["teacher_accuracy"] <= 1.0, "the shipped teacher was found and evaluated"
    assert f"run folder:        {out}" in done.stdout
    listed = subprocess.run([str(python), "-m", "bar_core", "list-models"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert listed.returncode == 0 and "resnet8" in listed.stdout


def test_bar_app_serves_the_dashboard(installed, tmp_path):
    _, bindir, env, site = installed
    port = free_port()
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen([str(bindir / "bar"), "app", "--server.port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env={**env, "BAR_RUNS_DIR": str(tmp_path / "runs")},
                            cwd=tmp_path)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    health = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        log.seek(0)
        output = log.read()
        assert health == "ok", output[-3000:]
        assert "no static folder found" not in output, "a fresh install's first start warns about nothing"
        assert f"http://127.0.0.1:{port}" in output
        # `bar app` became the installed launcher (exec), which serves the installed package's page
        assert Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0")[1:3] == ["-m", "bar_app"]
        found = subprocess.run([str(bindir / "python"), "-c", "import bar_app; print(bar_app.__file__)"],
                               capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
        assert Path(found).is_relative_to(site)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_functions_named_like_their_modules_stay_functions():
    """`bar_core.materialize` and `bar_core.barrier` are public functions; importing their modules
    (the trainer does) must not turn the package's names into the modules."""
    import importlib

    import bar_core
    importlib.import_module("bar_core.materialize")
    importlib.import_module("bar_core.barrier")
    assert callable(bar_core.materialize) and bar_core.materialize.__name__ == "materialize"
    assert bar_core.barrier(0.5, 0.25, 1.0) == pytest.approx(0.25 ** 2 / (0.75 * 0.5))
