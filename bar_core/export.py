"""Saving and loading a pruned network without the gated training classes.

A saved pruned network is two files in one folder:

    architecture.json   the PrunedNet spec (format "bar-pruned/1"): the channel map — which original
                        channels each stream, block read/inner/write set and the classifier keep —
                        and every width, enough to rebuild the modules with no gated model around
    weights.pt          its state_dict (plain tensors), read back with torch.load(weights_only=True)

Why not pickle the module: a pickle needs the exact classes at load time and can run code; the
JSON + weights pair is inspectable, safe to load, and is checked key by key and shape by shape.

`export_torch` writes a `torch.export` program (.pt2), loadable with `torch.export.load` and no
project code at all. `export_onnx` needs the `onnx` and `onnxscript` packages: the optional extra
`pip install "bar-explorer[onnx]"` (requirements.txt, which `make` installs, pins both); without them
it raises `ExportUnavailable` saying so.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from .pruned import SPEC_FORMAT, MaterializeError, PrunedNet

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.pt"
ONNX_PACKAGES = ("onnx", "onnxscript")  # the `onnx` extra of pyproject.toml


class ExportError(ValueError):
    """A pruned network that cannot be saved, loaded or exported; the message is one line."""


class ExportUnavailable(ExportError):
    """An export format whose packages are not installed."""


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(architecture.json, weights file) for a folder, or for a .pt file with the JSON beside it."""
    path = Path(path)
    if path.suffix == ".pt":
        return path.parent / ARCHITECTURE_FILE, path
    return path / ARCHITECTURE_FILE, path / WEIGHTS_FILE


def save_pruned(pruned: PrunedNet, path: str | os.PathLike) -> Path:
    """Write architecture.json and the weights (into folder `path`, or to `path` itself if it ends
    in .pt, with architecture.json beside it). Returns the folder."""
    if not isinstance(pruned, PrunedNet):
        raise ExportError(f"save_pruned needs a PrunedNet (from materialize), got {type(pruned).__name__}")
    arch, weights = _paths(path)
    arch.parent.mkdir(parents=True, exist_ok=True)
    spec = dict(pruned.spec, weights=weights.name)
    state = {k: v.detach().cpu().clone() for k, v in pruned.state_dict().items()}
    tmp = weights.with_name(weights.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, weights)
    arch.write_text(json.dumps(spec, indent=1))
    return arch.parent


def _read_spec(arch: Path) -> dict:
    if not arch.is_file():
        raise ExportError(f"{str(arch)!r} does not exist")
    try:
        spec = json.loads(arch.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{str(arch)!r} is not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise ExportError(f"{str(arch)!r} is not a pruned architecture (format {found!r}, expected {SPEC_FORMAT!r})")
    return spec


def _build(spec: dict, arch: Path) -> PrunedNet:
    try:
        return PrunedNet(spec)
    except (KeyError, TypeError, ValueError, IndexError, MaterializeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise ExportError(f"{str(arch)!r} describes no buildable network: {what}") from None


def _read_weights(weights: Path) -> dict[str, Tensor]:
    if not weights.is_file():
        raise ExportError(f"weights file {str(weights)!r} does not exist")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or unsafe files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"weights file {str(weights)!r} is corrupt or not a plain state_dict ({first[:120]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ExportError(f"weights file {str(weights)!r} does not hold a state_dict of tensors")
    return state


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


def load_pruned(path: str | os.PathLike) -> PrunedNet:
    """Rebuild a network written by save_pruned, in eval mode; refuses any key or shape mismatch."""
    arch, weights = _paths(path)
    spec = _read_spec(arch)
    if Path(path).suffix != ".pt":
        weights = arch.parent / Path(str(spec.get("weights", WEIGHTS_FILE))).name
    net = _build(spec, arch)
    state = _read_weights(weights)
    check_fit(net, state, f"weights file {str(weights)!r}")
    net.load_state_dict(state)
    return net.eval()


def export_torch(pruned: nn.Module, example: Tensor, path: str | os.PathLike, *, dynamic_batch: bool = True) -> Path:
    """Write a torch.export program (.pt2); load it with torch.export.load(path).module().

    With dynamic_batch the batch dimension is symbolic, so one file serves any batch size."""
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
    torch.export.save(program, path)
    return path


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


def export_onnx(pruned: nn.Module, example: Tensor, path: str | os.PathLike) -> Path:
    """Write an ONNX file with torch.onnx's exporter; ExportUnavailable if onnx/onnxscript are missing."""
    ok, why = onnx_available()
    if not ok:
        raise ExportUnavailable(why)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(pruned.eval(), (example,), path, input_names=["x"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the user gets one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX export failed: {first[:200]}") from None
    return path


def package_pruned(pruned: PrunedNet) -> bytes:
    """The pruned network as a zip (architecture.json + weights): one file to download and keep.

    Unzip it and `load_pruned(folder)` rebuilds the network without the gated training classes."""
    import io
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pruned(pruned, Path(tmp) / "pruned")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.iterdir()):
                zf.write(f, f"pruned/{f.name}")
    return buffer.getvalue()
