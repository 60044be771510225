"""Saving and loading a pruned network without the gated training classes.

A saved pruned network is two files in one folder:

    architecture.json   the PrunedNet spec (format "bar-pruned/1"): the channel map — which original
                        channels each stream, block read/inner/write set and the classifier keep —
                        and every width, enough to rebuild the modules with no gated model around;
                        optionally "preprocessing" (how the run fed its images: channels, input size,
                        the [0, 1] pixel scale and the mean/std applied to it) and "classes" (names)
    weights.pt          its state_dict (plain tensors), read back with torch.load(weights_only=True)

Why not pickle the module: a pickle needs the exact classes at load time and can run code; the
JSON + weights pair is inspectable, safe to load, and is checked key by key and shape by shape.
`load_pruned` needs torch and this package's export.py and pruned.py only (no training code); it reads
the folder, a .pt file with the JSON beside it, or the zip `package_pruned` makes, and the network it
returns carries `.preprocessing` and `.classes` (None for an export written without them).

Why the preprocessing travels with the weights: a network trained on normalised inputs scores at
chance on raw pixels, and nothing in the weights says which mean and std it saw.

`export_torch` writes a `torch.export` program (.pt2), loadable with `torch.export.load` and no
project code at all. `export_onnx` needs the `onnx` and `onnxscript` packages: the optional extra
`pip install "bar-explorer[onnx]"` (requirements.txt, which `make` installs, pins both); without them
it raises `ExportUnavailable` saying so. Both carry the same preprocessing and classes: the .pt2 as
its extra file bar-metadata.json, the ONNX file as metadata_props (which Netron shows).
`classify_snippet` writes the few lines that load a download and classify one image with them.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from .pruned import SPEC_FORMAT, MaterializeError, PrunedNet

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "bar-metadata.json"  # the preprocessing and classes inside a .pt2 (torch.export extra file)
ONNX_PACKAGES = ("onnx", "onnxscript")  # the `onnx` extra of pyproject.toml
PIXEL_RANGE = [0.0, 1.0]  # the scale mean/std apply to: uint8 pixels divided by 255, as every loader does


class ExportError(ValueError):
    """A pruned network that cannot be saved, loaded or exported; the message is one line."""


class ExportUnavailable(ExportError):
    """An export format whose packages are not installed."""


# ================================================================================ preprocessing
def make_preprocessing(dataset: str, in_channels: int, image_size, mean, std) -> dict:
    """The "preprocessing" entry of an export: x = (pixels / 255 - mean) / std per channel, NCHW."""
    return {"dataset": str(dataset), "in_channels": int(in_channels), "input_size": [int(v) for v in image_size],
            "layout": "NCHW", "value_range": list(PIXEL_RANGE), "mean": [float(m) for m in mean],
            "std": [float(v) for v in std],
            "formula": "x = (pixels / 255 - mean) / std, per channel, on uint8 images of input_size"}


def preprocessing_from_data(bundle) -> dict:
    """What a DataBundle (bar_core.data) does to an image before the network sees it, as JSON."""
    spec = bundle.spec
    return make_preprocessing(spec.name, spec.in_channels, spec.image_size, bundle.mean, bundle.std)


def dataset_preprocessing(name: str, *, in_channels: int | None = None, image_size=None, root: str | None = None,
                          train_limit: int | None = None, seed: int = 0) -> dict | None:
    """The preprocessing a run on dataset `name` used: the published mean/std of Fashion-MNIST and
    CIFAR, else what the loader computes (synthetic; imagefolder, read from `root`). None when the
    data cannot be read here (a folder that is gone) or the name is unknown."""
    from .data import DataError, dataset_info, load_data
    from .data.cifar import CIFAR10, CIFAR100
    from .data.fashion import FASHION_MEAN_STD

    known = {"fashion-mnist-subset": FASHION_MEAN_STD, "fashion-mnist": FASHION_MEAN_STD,
             "cifar10": (CIFAR10.mean, CIFAR10.std), "cifar100": (CIFAR100.mean, CIFAR100.std)}
    try:
        info = dataset_info(name)
    except DataError:
        return None
    if name in known:
        return make_preprocessing(name, in_channels or info.in_channels, image_size or info.image_size, *known[name])
    try:  # these loaders compute their statistics from the data itself
        bundle = load_data(name, root, train_limit=train_limit, test_limit=1, seed=seed)
    except (DataError, OSError, RuntimeError):
        return None
    return preprocessing_from_data(bundle)


def _metadata(spec: dict, preprocessing: dict | None, classes) -> dict:
    """Validated JSON-able copies of the preprocessing and class names for the network of `spec`."""
    if preprocessing is not None:
        if not isinstance(preprocessing, dict) or not {"mean", "std"} <= set(preprocessing):
            raise ExportError("preprocessing must be a dict with at least 'mean' and 'std' (see make_preprocessing)")
        try:
            preprocessing = json.loads(json.dumps(preprocessing))
        except (TypeError, ValueError) as exc:
            raise ExportError(f"preprocessing is not JSON-able: {exc}") from None
        channels = spec.get("in_channels")
        for key in ("mean", "std"):
            values = preprocessing[key]
            if not isinstance(values, list) or (channels is not None and len(values) != channels):
                raise ExportError(f"preprocessing {key} must list one value per input channel ({channels}), "
                                  f"got {values!r}")
        if not all(isinstance(v, (int, float)) and v > 0 for v in preprocessing["std"]):
            raise ExportError(f"preprocessing std must be positive, got {preprocessing['std']!r}")
    if classes is not None:
        classes = [str(c) for c in classes]
        if spec.get("num_classes") is not None and len(classes) != spec["num_classes"]:
            raise ExportError(f"{len(classes)} class names for a network with {spec['num_classes']} outputs")
    return {"preprocessing": preprocessing, "classes": classes}


# ================================================================================ save and load
def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(architecture.json, weights file) for a folder, or for a .pt file with the JSON beside it."""
    path = Path(path)
    if path.suffix == ".pt":
        return path.parent / ARCHITECTURE_FILE, path
    return path / ARCHITECTURE_FILE, path / WEIGHTS_FILE


def save_pruned(pruned: PrunedNet, path: str | os.PathLike, *, preprocessing: dict | None = None,
                classes=None) -> Path:
    """Write architecture.json and the weights (into folder `path`, or to `path` itself if it ends
    in .pt, with architecture.json beside it). Returns the folder.

    `preprocessing` (make_preprocessing / preprocessing_from_data) and `classes` (one name per
    output) go into architecture.json, so that whoever loads the network feeds it what it was trained on."""
    if not isinstance(pruned, PrunedNet):
        raise ExportError(f"save_pruned needs a PrunedNet (from materialize), got {type(pruned).__name__}")
    meta = _metadata(pruned.spec, preprocessing, classes)
    arch, weights = _paths(path)
    arch.parent.mkdir(parents=True, exist_ok=True)
    spec = dict(pruned.spec, weights=weights.name)
    spec.update({k: v for k, v in meta.items() if v is not None})
    state = {k: v.detach().cpu().clone() for k, v in pruned.state_dict().items()}
    tmp = weights.with_name(weights.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, weights)
    arch.write_text(json.dumps(spec, indent=1))
    return arch.parent


def _parse_spec(text: str | bytes, source: str) -> dict:
    try:
        spec = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{source} is not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise ExportError(f"{source} is not a pruned architecture (format {found!r}, expected {SPEC_FORMAT!r})")
    return spec


def _read_spec(arch: Path) -> dict:
    if not arch.is_file():
        raise ExportError(f"{str(arch)!r} does not exist")
    return _parse_spec(arch.read_bytes(), repr(str(arch)))


def _build(spec: dict, source: str) -> PrunedNet:
    try:
        return PrunedNet(spec)
    except (KeyError, TypeError, ValueError, IndexError, MaterializeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise ExportError(f"{source} describes no buildable network: {what}") from None


def _load_state(f, source: str) -> dict[str, Tensor]:
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or unsafe files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{source} is corrupt or not a plain state_dict ({first[:120]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ExportError(f"{source} does not hold a state_dict of tensors")
    return state


def _read_weights(weights: Path) -> dict[str, Tensor]:
    if not weights.is_file():
        raise ExportError(f"weights file {str(weights)!r} does not exist")
    return _load_state(weights, f"weights file {str(weights)!r}")


def check_fit(net: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise a one-line ExportError naming the first missing, unexpected or mis-shaped tensor."""
    own = net.state_dict()
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} shape mismatch(es), e.g. {k} is {tuple(state[k].shape)} in the weights "
                     f"but {tuple(own[k].shape)} in the architecture")
    if missing:
        parts.append(f"{len(missing)} missing tensor(s), e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}")
    if parts:
        raise ExportError(f"{source} does not fit its architecture: {'; '.join(parts)}")


def _read_zip(path: Path) -> tuple[dict, dict[str, Tensor], str]:
    """(spec, state, source) from a zip holding one architecture.json with its weights beside it."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            archs = [n for n in names if n.rsplit("/", 1)[-1] == ARCHITECTURE_FILE]
            if len(archs) != 1:
                raise ExportError(f"{str(path)!r} holds {len(archs)} {ARCHITECTURE_FILE} files, expected one")
            spec = _parse_spec(zf.read(archs[0]), f"{archs[0]!r} in {str(path)!r}")
            folder = archs[0][: -len(ARCHITECTURE_FILE)]  # "pruned/" or ""
            member = folder + Path(str(spec.get("weights", WEIGHTS_FILE))).name
            if member not in names:
                raise ExportError(f"{str(path)!r} has no weights file {member!r}")
            source = f"weights file {member!r} in {str(path)!r}"
            return spec, _load_state(io.BytesIO(zf.read(member)), source), source
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExportError(f"{str(path)!r} is not a readable zip ({exc})") from None


def load_pruned(path: str | os.PathLike) -> PrunedNet:
    """Rebuild a network written by save_pruned, in eval mode; refuses any key or shape mismatch.

    `path`: the folder, its weights .pt file, or the zip package_pruned makes (the app's download,
    not unzipped). The network has `.preprocessing` (dict) and `.classes` (list of names) as the
    export recorded them, each None for an export written without it."""
    path = Path(path)
    if path.suffix == ".zip":
        if not path.is_file():
            raise ExportError(f"{str(path)!r} does not exist")
        spec, state, source = _read_zip(path)
        net = _build(spec, repr(str(path)))
    else:
        arch, weights = _paths(path)
        spec = _read_spec(arch)
        if path.suffix != ".pt":
            weights = arch.parent / Path(str(spec.get("weights", WEIGHTS_FILE))).name
        net = _build(spec, repr(str(arch)))
        state = _read_weights(weights)
        source = f"weights file {str(weights)!r}"
    check_fit(net, state, source)
    net.load_state_dict(state)
    try:
        meta = _metadata(spec, spec.get("preprocessing"), spec.get("classes"))
    except ExportError:
        meta = {"preprocessing": None, "classes": None}  # damaged metadata must not cost the network itself
    net.preprocessing, net.classes = meta["preprocessing"], meta["classes"]
    return net.eval()


# ================================================================================ other formats
def _metadata_of(pruned: nn.Module, preprocessing: dict | None, classes) -> dict:
    """The metadata to embed: the arguments, else what load_pruned attached to `pruned`."""
    preprocessing = preprocessing if preprocessing is not None else getattr(pruned, "preprocessing", None)
    classes = classes if classes is not None else getattr(pruned, "classes", None)
    return _metadata(getattr(pruned, "spec", {}), preprocessing, classes)


def export_torch(pruned: nn.Module, example: Tensor, path: str | os.PathLike, *, dynamic_batch: bool = True,
                 preprocessing: dict | None = None, classes=None) -> Path:
    """Write a torch.export program (.pt2); load it with torch.export.load(path).module().

    With dynamic_batch the batch dimension is symbolic, so one file serves any batch size. The
    preprocessing and classes travel as the extra file bar-metadata.json (read_torch_metadata)."""
    meta = _metadata_of(pruned, preprocessing, classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pruned = pruned.eval()
    dynamic = ({"x": {0: torch.export.Dim("batch", min=1, max=65536)}},) if dynamic_batch else None
    if dynamic and example.shape[0] == 1:
        # torch.export specialises a size-1 dimension to the constant 1, so a batch-1 example would
        # contradict the symbolic batch: trace with two copies instead (the program is the same).
        example = example.expand(2, *example.shape[1:]).contiguous()
    try:
        program = torch.export.export(pruned, (example,), dynamic_shapes=dynamic[0] if dynamic else None)
    except Exception as exc:  # noqa: BLE001 - the tracer raises many types; the user gets one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"torch.export failed: {first[:200]}") from None
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(meta)})
    return path


def read_torch_metadata(path: str | os.PathLike) -> dict:
    """{"preprocessing": ..., "classes": ...} of a .pt2 from export_torch (None where it has none)."""
    extra = {METADATA_FILE: ""}
    torch.export.load(path, extra_files=extra)
    try:
        meta = json.loads(extra[METADATA_FILE] or "{}")
    except json.JSONDecodeError:
        meta = {}
    return {"preprocessing": meta.get("preprocessing"), "classes": meta.get("classes")}


def onnx_available() -> tuple[bool, str]:
    """(available, why not): torch.onnx needs `onnx` (and `onnxscript` for its default exporter)."""
    missing = []
    for module in ONNX_PACKAGES:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return False, (f"ONNX export needs the Python package(s) {', '.join(missing)} (pip install "
                       f"{' '.join(missing)}), which are not installed")
    return True, ""


def export_onnx(pruned: nn.Module, example: Tensor, path: str | os.PathLike, *, preprocessing: dict | None = None,
                classes=None) -> Path:
    """Write an ONNX file with torch.onnx's exporter; ExportUnavailable if onnx/onnxscript are missing.

    The preprocessing and classes become the model's metadata_props "preprocessing" and "classes" (JSON)."""
    ok, why = onnx_available()
    if not ok:
        raise ExportUnavailable(why)
    meta = _metadata_of(pruned, preprocessing, classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(pruned.eval(), (example,), path, input_names=["x"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the user gets one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX export failed: {first[:200]}") from None
    if any(v is not None for v in meta.values()):
        import onnx
        model = onnx.load(path)
        for key, value in meta.items():
            if value is not None:
                model.metadata_props.add(key=key, value=json.dumps(value))
        onnx.save(model, path)
    return path


def export_bytes(kind: str, pruned: nn.Module, example: Tensor, *, preprocessing: dict | None = None,
                 classes=None) -> bytes:
    """The file export_onnx ("onnx") or export_torch ("pt2") writes, as bytes (for a download)."""
    import tempfile

    writers = {"onnx": export_onnx, "pt2": export_torch}
    if kind not in writers:
        raise ExportError(f"unknown export kind {kind!r}; known: {', '.join(writers)}")
    with tempfile.TemporaryDirectory(prefix="bar-export-") as tmp:
        path = writers[kind](pruned, example, Path(tmp) / f"pruned.{kind}", preprocessing=preprocessing,
                             classes=classes)
        return path.read_bytes()


def package_pruned(pruned: PrunedNet, *, preprocessing: dict | None = None, classes=None) -> bytes:
    """The pruned network as a zip (pruned/architecture.json + pruned/weights.pt): one file to keep.

    `load_pruned("that.zip")` rebuilds the network from it without unzipping and without the gated
    training classes (unzipped, `load_pruned("pruned")` does the same)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pruned(pruned, Path(tmp) / "pruned", preprocessing=preprocessing, classes=classes)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.iterdir()):
                zf.write(f, f"pruned/{f.name}")
    return buffer.getvalue()


# ================================================================================ the snippet
_CLASSIFY = """\
image = Image.open(sys.argv[1] if len(sys.argv) > 1 else "image.png")
image = image.convert("L" if pre["in_channels"] == 1 else "RGB").resize(tuple(pre["input_size"][::-1]))  # PIL: (W, H)
h, w = pre["input_size"]
x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(1, h, w, pre["in_channels"])
x = x.permute(0, 3, 1, 2).float() / 255  # NCHW, pixels scaled to pre["value_range"] = [0, 1]
x = (x - torch.tensor(pre["mean"]).view(1, -1, 1, 1)) / torch.tensor(pre["std"]).view(1, -1, 1, 1)
with torch.no_grad():
    p = net(x).softmax(1)[0]
print(classes[int(p.argmax())], f"{float(p.max()):.0%}")
"""


def classify_snippet(file_name: str, preprocessing: dict | None = None) -> str:
    """Python that loads the download `file_name` (.zip: with load_pruned; .pt2: with torch alone) and
    prints the class of one image (argv[1], else image.png), preprocessed as the export records it."""
    kind = Path(file_name).suffix
    note = ""
    if str((preprocessing or {}).get("dataset", "")).startswith("fashion"):
        note = ("# Fashion-MNIST pictures are light garments on a black background: invert a photo taken on\n"
                "# white (PIL.ImageOps.invert) before classifying it.\n")
    if kind == ".zip":
        return ("# Classify one image with the pruned network from BAR Explorer.\n"
                "# Needs torch, Pillow and bar_core (pip install bar-explorer, or the repository on PYTHONPATH).\n"
                f"{note}import sys\n\nimport torch\nfrom PIL import Image\n\nfrom bar_core.export import load_pruned\n\n"
                f"net = load_pruned({file_name!r})  # the download itself, or the folder it unzips to\n"
                "pre, classes = net.preprocessing, net.classes  # as recorded in architecture.json\n" + _CLASSIFY)
    if kind == ".pt2":
        return ("# Classify one image with the pruned network as a torch.export program: torch and Pillow only.\n"
                f"{note}import json\nimport sys\n\nimport torch\nfrom PIL import Image\n\n"
                f"extra = {{{METADATA_FILE!r}: ''}}  # torch.export.load fills it with the file's preprocessing\n"
                f"net = torch.export.load({file_name!r}, extra_files=extra).module()\n"
                f"meta = json.loads(extra[{METADATA_FILE!r}])\n"
                "pre, classes = meta['preprocessing'], meta['classes']\n" + _CLASSIFY)
    raise ExportError(f"no snippet for {file_name!r}: the downloads are .zip and .pt2")
