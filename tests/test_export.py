"""Saving, reloading and exporting a pruned network: same logits, no training classes needed, and
any mismatch between architecture.json and the weights refused with a one-line message."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bar_core.export import (
    ExportError,
    ExportUnavailable,
    export_onnx,
    export_torch,
    load_pruned,
    onnx_available,
    save_pruned,
)
from bar_core.materialize import materialize
from tests.helpers import make

ROOT = Path(__file__).resolve().parent.parent


def logits(net, in_channels=3, batch=4, seed=0):
    x = torch.randn(batch, in_channels, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("name,round_to", [("resnet8", 1), ("wrn16_2", 8), ("resnet18", 1)])
def test_save_load_same_logits(tmp_path, name, round_to):
    pruned = materialize(make(name, 3, seed=41, p_closed=0.6), round_to=round_to)
    folder = save_pruned(pruned, tmp_path / "net")
    assert (folder / "architecture.json").is_file() and (folder / "weights.pt").is_file()
    loaded = load_pruned(folder)
    assert not loaded.training
    assert torch.equal(logits(loaded), logits(pruned))


def test_save_to_pt_file(tmp_path):
    pruned = materialize(make("resnet8", 3, seed=43))
    save_pruned(pruned, tmp_path / "model.pt")
    assert (tmp_path / "architecture.json").is_file()
    assert torch.equal(logits(load_pruned(tmp_path / "model.pt")), logits(pruned))


def test_architecture_json_is_a_channel_map(tmp_path):
    model = make("resnet8", 1, seed=47, p_closed=0.5)
    folder = save_pruned(materialize(model), tmp_path)
    spec = json.loads((folder / "architecture.json").read_text())
    assert spec["format"] == "bar-pruned/1" and spec["in_channels"] == 1 and spec["num_classes"] == 10
    for s in spec["streams"]:
        assert s["width"] == len(s["channels"]) and s["channels"] == sorted(s["channels"])
    for b in spec["blocks"]:
        if b["type"] != "constant":
            assert len(b["read"]) == len(b["read_channels"]) and len(b["inner_channels"]) == b["inner"]


def test_loading_needs_no_training_code(tmp_path):
    """A fresh interpreter loads and runs the saved network without importing the gated models."""
    folder = save_pruned(materialize(make("wrn16_1", 3, seed=53)), tmp_path / "net")
    code = ("import sys, torch; from bar_core.export import load_pruned; net = load_pruned(sys.argv[1]); "
            "net(torch.zeros(1, 3, 32, 32)); "
            "bad = [m for m in sys.modules if m.startswith(('bar_core.models', 'bar_core.hard_concrete', "
            "'bar_core.connectivity'))]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mismatched_shapes_refused(tmp_path):
    folder = save_pruned(materialize(make("resnet8", 3, seed=59, p_closed=0.5)), tmp_path)
    spec = json.loads((folder / "architecture.json").read_text())
    block = next(b for b in spec["blocks"] if b["type"] == "basic" and b["branch"])
    block["inner"] += 1
    (folder / "architecture.json").write_text(json.dumps(spec))
    with pytest.raises(ExportError, match=r"shape mismatch.*conv1\.weight") as info:
        load_pruned(folder)
    assert "\n" not in str(info.value)


def test_missing_and_unexpected_tensors_refused(tmp_path):
    folder = save_pruned(materialize(make("resnet8", 3, seed=61)), tmp_path)
    state = torch.load(folder / "weights.pt", weights_only=True)
    state.pop("head.fc.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, folder / "weights.pt")
    with pytest.raises(ExportError, match=r"missing tensor.*head\.fc\.bias.*unexpected tensor.*extra\.weight"):
        load_pruned(folder)


def test_bad_files_refused(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        load_pruned(tmp_path / "nothing")
    folder = save_pruned(materialize(make("resnet8", 3, seed=67)), tmp_path)
    (folder / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="corrupt"):
        load_pruned(folder)
    (folder / "architecture.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        load_pruned(folder)
    (folder / "architecture.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ExportError, match="not a pruned architecture"):
        load_pruned(folder)
    (folder / "architecture.json").write_text(json.dumps({"format": "bar-pruned/1", "stem": {}}))
    with pytest.raises(ExportError, match="no buildable network"):
        load_pruned(folder)


def test_pickled_module_refused(tmp_path):
    """weights_only=True: a file holding a pickled module (arbitrary code on load) is refused."""
    pruned = materialize(make("resnet8", 3, seed=71))
    folder = save_pruned(pruned, tmp_path)
    torch.save(pruned, folder / "weights.pt")
    with pytest.raises(ExportError, match="corrupt or not a plain state_dict"):
        load_pruned(folder)


def test_torch_export_round_trip_any_batch(tmp_path):
    pruned = materialize(make("resnet8", 3, seed=73, p_closed=0.5))
    path = export_torch(pruned, torch.zeros(1, 3, 32, 32), tmp_path / "net.pt2")  # batch 1 is the tricky case
    program = torch.export.load(path).module()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(program(x), pruned(x), atol=1e-5)


def test_onnx_export_or_clear_refusal(tmp_path):
    pruned = materialize(make("resnet8", 3, seed=79))
    ok, why = onnx_available()
    if not ok:
        with pytest.raises(ExportUnavailable, match="onnx"):
            export_onnx(pruned, torch.zeros(1, 3, 32, 32), tmp_path / "net.onnx")
        assert "pip install" in why
    else:
        import numpy as np
        import onnx
        from onnx.reference import ReferenceEvaluator
        path = export_onnx(pruned, torch.zeros(1, 3, 32, 32), tmp_path / "net.onnx")
        model = onnx.load(path)
        onnx.checker.check_model(model)
        x = torch.randn(1, 3, 32, 32)
        (logits,) = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})
        with torch.no_grad():
            assert np.allclose(logits, pruned(x).numpy(), atol=1e-4), "ONNX computes what the pruned net does"


def test_onnx_packages_are_the_declared_extra_and_pinned():
    # What export_onnx needs is what pyproject's `onnx` extra installs and what requirements.txt pins.
    import tomllib

    from bar_core.export import ONNX_PACKAGES
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {req.split(">")[0].split("=")[0].strip() for req in project["optional-dependencies"]["onnx"]}
    pinned = {line.split("==")[0] for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    assert extra == set(ONNX_PACKAGES) and extra <= pinned
    assert onnx_available() == (True, ""), "make installs requirements.txt, so ONNX export works here"


def test_packaged_zip_reloads_to_the_same_logits(tmp_path):
    import io
    import zipfile

    from bar_core.export import package_pruned
    pruned = materialize(make("resnet8", 1, seed=5))
    blob = package_pruned(pruned)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert sorted(zf.namelist()) == ["pruned/architecture.json", "pruned/weights.pt"]
        zf.extractall(tmp_path)
    again = load_pruned(tmp_path / "pruned")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(again(x), pruned(x), atol=1e-6)


PRE = {"dataset": "fashion-mnist-subset", "in_channels": 1, "input_size": [28, 28], "layout": "NCHW",
       "value_range": [0.0, 1.0], "mean": [0.286], "std": [0.353], "formula": "x = (pixels / 255 - mean) / std"}
CLASSES = [f"class {i}" for i in range(10)]


def test_preprocessing_and_classes_travel_with_every_form(tmp_path):
    from bar_core.export import package_pruned
    pruned = materialize(make("resnet8", 1, seed=7))
    folder = save_pruned(pruned, tmp_path / "net", preprocessing=PRE, classes=CLASSES)
    spec = json.loads((folder / "architecture.json").read_text())
    assert spec["preprocessing"] == PRE and spec["classes"] == CLASSES
    zipped = tmp_path / "net.zip"
    zipped.write_bytes(package_pruned(pruned, preprocessing=PRE, classes=CLASSES))
    x = torch.randn(2, 1, 28, 28)
    for where in (folder, folder / "weights.pt", zipped):  # the zip is read as it is, not unzipped
        net = load_pruned(where)
        assert net.preprocessing == PRE and net.classes == CLASSES
        with torch.no_grad():
            assert torch.equal(net(x), pruned(x))


def test_exports_without_preprocessing_still_load(tmp_path):
    pruned = materialize(make("resnet8", 1, seed=9))
    folder = save_pruned(pruned, tmp_path)
    spec = json.loads((folder / "architecture.json").read_text())
    assert "preprocessing" not in spec and "classes" not in spec  # what every earlier export looks like
    net = load_pruned(folder)
    assert net.preprocessing is None and net.classes is None


def test_bad_metadata_refused_in_one_line(tmp_path):
    pruned = materialize(make("resnet8", 1, seed=11))
    bad = [({**PRE, "mean": [0.1, 0.2]}, None, "one value per input channel"),
           ({**PRE, "std": [0.0]}, None, "std must be positive"),
           ({"mean": [0.1]}, None, "at least 'mean' and 'std'"),
           (None, CLASSES[:3], "3 class names for a network with 10 outputs")]
    for pre, classes, message in bad:
        with pytest.raises(ExportError, match=message) as info:
            save_pruned(pruned, tmp_path, preprocessing=pre, classes=classes)
        assert "\n" not in str(info.value)


def test_damaged_zips_refused(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"no zip")
    with pytest.raises(ExportError, match="not a readable zip"):
        load_pruned(tmp_path / "junk.zip")
    import zipfile
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.txt", "nothing")
    with pytest.raises(ExportError, match="holds 0 architecture.json"):
        load_pruned(tmp_path / "empty.zip")
    with pytest.raises(ExportError, match="does not exist"):
        load_pruned(tmp_path / "missing.zip")


@pytest.mark.parametrize("name", ["fashion-mnist-subset", "synthetic"])
def test_dataset_preprocessing_is_what_the_loader_applies(name):
    from bar_core.data import load_data
    from bar_core.export import dataset_preprocessing
    pre = dataset_preprocessing(name)
    bundle = load_data(name, test_limit=5)
    assert pre["mean"] == pytest.approx(list(bundle.mean)) and pre["std"] == pytest.approx(list(bundle.std))
    assert (pre["in_channels"], pre["input_size"]) == (bundle.spec.in_channels, list(bundle.spec.image_size))
    raw = next(bundle._test_uint8(5, "cpu"))[0]
    by_hand = (raw.float() / 255 - torch.tensor(pre["mean"]).view(1, -1, 1, 1)) / torch.tensor(pre["std"]).view(1, -1, 1, 1)
    assert torch.allclose(by_hand, bundle.sample_input(5), atol=1e-5)  # the formula the export states is the loader's


@pytest.mark.parametrize("name,in_channels", [("resnet8", 1), ("wrn16_1", 3)])
def test_layer_table_sums_to_the_counts(name, in_channels):
    from bar_core.cost import count_macs, count_params, layer_table
    pruned = materialize(make(name, in_channels, seed=13, p_closed=0.7))
    shape = (in_channels, 28, 28)
    rows = layer_table(pruned, shape)
    assert sum(r["MACs"] for r in rows) == count_macs(pruned, shape)
    assert sum(r["params"] for r in rows) == count_params(pruned)
    conv = next(r for r in rows if r["type"] == "Conv2d")
    assert conv["in"] == in_channels and conv["kernel"] == "3×3" and conv["MACs"] > 0
