"""The Connectivity view's pruned network, end to end on a real tiny run on the shipped Fashion-MNIST
subset: timed in a separate process with the numbers shown, listed layer by layer, and downloaded as a
zip, .onnx and .pt2 that carry the run's preprocessing and classes, so that the reloaded network
scores what the run reported and the shown snippet classifies an image from any folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from bar_app.views import connectivity
from bar_core import cost
from bar_core.data import FASHION_CLASSES, SUBSET_PATH, stratified_indices
from bar_core.export import classify_snippet, load_pruned, read_torch_metadata
from bar_core.job import JobManager
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "bar_app" / "main.py")
TEST_LIMIT = 1000  # 0.5 points of it are 5 images: room for a near-tie flipped by float rounding
# The shipped teacher pruned to B = 1/2 in 120 steps: seconds, and unlike shorter or tighter runs it
# does not collapse to chance (about 56 % here), so feeding it the wrong input shows.
CONFIG = tiny_config(dataset="fashion-mnist-subset", teacher="default", budget=0.5, lam=2e-6, max_steps_per_epoch=60,
                     test_limit=TEST_LIMIT)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny real run, the app opened on it, "Build the pruned network" clicked once; every call
    bar_core.cost makes to subprocess.run is recorded."""
    runs = tmp_path_factory.mktemp("conn") / "runs"
    calls = []

    def spy(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return subprocess.run(cmd, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BAR_RUNS_DIR", str(runs))
        mp.setattr(cost, "subprocess", types.SimpleNamespace(run=spy, TimeoutExpired=subprocess.TimeoutExpired))
        st.cache_resource.clear()
        try:
            job = JobManager(runs).start(CONFIG, name="to-export")
            assert job.join(180)
            summary = json.loads((runs / "to-export" / "summary.json").read_text())
            at = AppTest.from_file(APP, default_timeout=120)
            at.run()
            at.session_state["view_tabs"] = "Connectivity"
            at.run()
            t0 = time.perf_counter()
            at.button(key="btn_pruned").click().run()
            click_s = time.perf_counter() - t0
            assert not at.exception, at.exception
            assert not [e.value for e in at.error]
            reports = at.session_state["pruned_reports"]
        finally:
            st.cache_resource.clear()
    assert len(reports) == 1
    return types.SimpleNamespace(at=at, report=next(iter(reports.values())), calls=calls, summary=summary,
                                 click_s=click_s)


def real_test_images() -> tuple[np.ndarray, np.ndarray]:
    """The run's test images as stored (uint8, not normalised) and their labels: the first
    TEST_LIMIT of the subset's test set per class, as the loader picks them."""
    with np.load(SUBSET_PATH, allow_pickle=False) as z:
        x, y = z["x_test"], z["y_test"]
    idx = stratified_indices(y, TEST_LIMIT)
    return x[idx], y[idx]


def as_input(raw: np.ndarray, pre: dict) -> torch.Tensor:
    """uint8 N×H×W images, preprocessed as the export says: [0, 1] scale, then (x - mean) / std."""
    x = torch.from_numpy(raw).float()[:, None] / 255
    return (x - torch.tensor(pre["mean"]).view(1, -1, 1, 1)) / torch.tensor(pre["std"]).view(1, -1, 1, 1)


def written(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_timed_in_a_separate_process_with_the_numbers_shown(built):
    report = built.report
    child = [c for c in built.calls if c[1:3] == ["-m", "bar_core.cost"]]
    assert len(child) == 1 and child[0][0] == sys.executable, built.calls
    assert report["isolated"] and report["pid"] != os.getpid()
    (t,) = report["timings"]
    assert (t["batch"], t["threads"]) == (connectivity.TIMING_BATCH, connectivity.TIMING_THREADS)
    shown = next(c.value for c in built.at.caption if c.value.startswith("Timed in"))
    assert "a separate Python process" in shown
    assert f"batch {t['batch']}, {t['threads']} thread" in shown
    assert f"dense {1e3 * t['dense_s']:.2f} ms" in shown and f"pruned {1e3 * t['pruned_s']:.2f} ms" in shown
    low, high = t["speedup_spread"]
    assert f"({low:.2f}–{high:.2f}× over the rounds)" in shown
    assert f"MAC reduction of {report['mac_reduction']:.2f}×" in shown and f"= {t['efficiency']:.2f}" in shown
    metrics = {m.label: m.value for m in built.at.metric}
    assert metrics["Measured speedup"] == f"{t['speedup']:.2f}×"
    assert metrics["MAC reduction"] == f"{report['mac_reduction']:.2f}×"
    print(f"click to numbers: {built.click_s:.1f} s, timing process {report['process_s']:.1f} s, "
          f"speedup {t['speedup']:.2f}x vs MAC reduction {report['mac_reduction']:.2f}x")


def test_downloads_and_snippets_are_offered(built):
    labels = [b.proto.label for b in built.at.get("download_button")]
    for label in ("Download the pruned model (.zip)", "As ONNX (.onnx)", "As torch.export (.pt2)"):
        assert label in labels
    codes = [c.value for c in built.at.code]
    assert any("load_pruned('pruned-epoch" in c and ".zip')" in c for c in codes)
    assert any("torch.export.load('pruned-epoch" in c for c in codes)


def test_layer_table_sums_to_the_mac_count(built):
    report = built.report
    layers = next(d.value for d in built.at.dataframe if "MACs" in d.value.columns)
    assert {"layer", "in", "out", "params", "MACs"} <= set(layers.columns)
    assert int(layers["MACs"].sum()) == cost.count_macs(report["pruned"], report["shape"]) == report["macs_pruned"]
    assert int(layers["params"].sum()) == cost.count_params(report["pruned"])


def test_export_holds_preprocessing_and_classes_and_scores_the_run_accuracy(built, tmp_path):
    net = load_pruned(written(tmp_path, "net.zip", built.report["zip"]))
    pre = net.preprocessing
    assert net.classes == list(FASHION_CLASSES)
    assert pre["mean"] == pytest.approx([0.2860]) and pre["std"] == pytest.approx([0.3530])
    assert (pre["in_channels"], pre["input_size"], pre["value_range"]) == (1, [28, 28], [0.0, 1.0])
    raw, labels = real_test_images()
    with torch.no_grad():
        accuracy = float((net(as_input(raw, pre)).argmax(1) == torch.from_numpy(labels)).float().mean())
    assert abs(accuracy - built.summary["pruned_accuracy"]) <= 0.005, (accuracy, built.summary["pruned_accuracy"])


def snippet_prints(tmp_path: Path, download: str, data: bytes, image: np.ndarray, pre: dict) -> list[str]:
    """Run the view's snippet as a script in a folder outside the repository; its output lines."""
    from PIL import Image

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    written(folder, download, data)
    Image.fromarray(image).save(folder / "image.png")
    # what else the script imported: nothing of the training code or the app, and for a .pt2 no bar_core at all
    check = ("\nprint(sorted(m for m in sys.modules if m.startswith(('bar_core.models', 'bar_core.trainer', "
             "'bar_core.data', 'bar_core.connectivity', 'streamlit'))), 'bar_core' in sys.modules)\n")
    (folder / "classify.py").write_text(classify_snippet(download, pre) + check)
    # bar_core as an installed package would be: importable, but not from the working folder
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "classify.py", "image.png"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def an_image_raw_pixels_get_wrong(net, pre: dict) -> tuple[np.ndarray, int]:
    """A real test image whose class, preprocessed, differs from the class of its raw pixels (0-255
    and 0-1): the snippet's answer then shows which input it fed."""
    raw, _ = real_test_images()
    with torch.no_grad():
        good = net(as_input(raw, pre)).argmax(1)
        x = torch.from_numpy(raw).float()[:, None]
        differs = (net(x).argmax(1) != good) & (net(x / 255).argmax(1) != good)
    assert bool(differs.any()), "raw pixels and preprocessed ones give the same classes: nothing to tell apart"
    i = int(differs.nonzero()[0])
    return raw[i], int(good[i])


def test_zip_snippet_classifies_an_image_outside_the_repository(built, tmp_path):
    net = load_pruned(written(tmp_path, "net.zip", built.report["zip"]))
    image, expected = an_image_raw_pixels_get_wrong(net, net.preprocessing)
    download = next(c.value for c in built.at.code if "load_pruned(" in c.value).split("load_pruned('")[1].split("'")[0]
    out = snippet_prints(tmp_path, download, built.report["zip"], image, net.preprocessing)
    assert out[0].rsplit(" ", 1)[0] == FASHION_CLASSES[expected], out
    assert out[-1] == "[] True", "the snippet loaded training code or the app"


def test_onnx_and_pt2_downloads_load_and_compute_the_same_logits(built, tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    report, pruned = built.report, built.report["pruned"]
    raw, _ = real_test_images()
    x = as_input(raw[:3], report["preprocessing"])
    with torch.no_grad():
        expected = pruned(x)

    pt2 = written(tmp_path, "net.pt2", connectivity.export_data("pt2", report)())
    with torch.no_grad():
        assert torch.allclose(torch.export.load(pt2).module()(x), expected, atol=1e-5)
    assert read_torch_metadata(pt2) == {"preprocessing": report["preprocessing"], "classes": list(FASHION_CLASSES)}
    out = snippet_prints(tmp_path, "pruned.pt2", pt2.read_bytes(), raw[0], report["preprocessing"])
    assert out[0].rsplit(" ", 1)[0] in FASHION_CLASSES and out[-1] == "[] False"

    model = onnx.load(written(tmp_path, "net.onnx", connectivity.export_data("onnx", report)()))
    onnx.checker.check_model(model)
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta == {"preprocessing": report["preprocessing"], "classes": list(FASHION_CLASSES)}
    (logits,) = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})
    assert np.allclose(logits, expected.numpy(), atol=1e-4)


def test_a_failing_timing_process_is_one_line():
    with pytest.raises(cost.TimingError, match="timing process failed") as info:
        cost.compare_isolated(torch.nn.Identity(), torch.nn.Identity(), (1, 28, 28), batches=(1,), threads=(1,))
    assert "\n" not in str(info.value)
