"""Where data lives on this machine. Loaders read these at call time, so a test can point them elsewhere."""
from __future__ import annotations

from pathlib import Path

from .batching import DataError

ASSETS = Path(__file__).resolve().parents[1] / "assets"  # bar_core/assets, package data
SUBSET_PATH = ASSETS / "fashion-mnist-subset.npz"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_FASHION_PACKAGE = "dataset-fashion-mnist"
# Where download=True puts data when no root is given, and where a later offline call finds it again.
DOWNLOAD_ROOT = Path.home() / ".cache" / "bar-explorer" / "data"


def require_dir(root, name: str) -> Path:
    """`root` as a folder that exists, or a DataError naming it and the dataset."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root {str(root)!r} for {name} does not exist or is not a folder")
    return path
