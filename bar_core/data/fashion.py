"""Fashion-MNIST, the full 60,000 / 10,000 images, from IDX files: Debian's `dataset-fashion-mnist`
package, a data root, an earlier download, or (only with download=True) torchvision's download."""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from . import paths
from .batching import DataError, LoadRequest, TensorBundle, tensor_bundle

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
                 "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
# Mean/std of the full official training set on the [0, 1] scale. The shipped subset uses them too, so
# a teacher trained on one is fed identically scaled inputs on the other.
FASHION_MEAN_STD = ((0.2860,), (0.3530,))

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or raw, told apart by content) into a numpy array.

    Debian's Fashion-MNIST files differ in bytes from the ones torchvision checksums, so they are
    parsed here: magic 0x0000, a dtype code, the number of dimensions, then big-endian uint32 sizes."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut file, EOFError
            raise DataError(f"{str(path)!r} is a damaged gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{str(path)!r} is not an IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"IDX file {str(path)!r} has {len(raw)} bytes, its header promises {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def find_fashion_dir(root: str | Path) -> Path | None:
    """The folder under `root` holding all four Fashion-MNIST IDX files (.gz or raw): `root`
    itself, torchvision's FashionMNIST/raw, or a fashion-mnist/ subfolder."""
    root = Path(root)
    for d in (root, root / "FashionMNIST" / "raw", root / "fashion-mnist", root / "raw"):
        if all(_idx_file(d, stem) is not None for stem in FASHION_FILES.values()):
            return d
    return None


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_fashion_idx(folder: str | Path) -> dict[str, np.ndarray]:
    """x_train (60000, 28, 28) uint8, y_train, x_test, y_test from a folder of IDX files."""
    folder = Path(folder)
    arrays = {}
    for key, stem in FASHION_FILES.items():
        path = _idx_file(folder, stem)
        if path is None:
            raise DataError(f"{str(folder)!r} has no {stem}[.gz]")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.dtype != np.uint8 or y.shape != (len(x),) or y.max(initial=0) >= len(FASHION_CLASSES):
            raise DataError(f"Fashion-MNIST {split} files in {str(folder)!r} have unexpected shapes "
                            f"{x.shape} / {y.shape}")
    return arrays


def installed() -> bool:
    """Whether the full set is here without a root: Debian's package or an earlier download."""
    return find_fashion_dir(paths.DEBIAN_FASHION_DIR) is not None or find_fashion_dir(paths.DOWNLOAD_ROOT) is not None


def _fashion_folder(root, download: bool) -> Path:
    """Where the full Fashion-MNIST is: `root`, else Debian's package, else an earlier download;
    with download=True, fetched through torchvision into `root` (or paths.DOWNLOAD_ROOT)."""
    if root is not None:
        paths.require_dir(root, "fashion-mnist")
        found = find_fashion_dir(root)
    else:
        found = find_fashion_dir(paths.DEBIAN_FASHION_DIR) or find_fashion_dir(paths.DOWNLOAD_ROOT)
    if found is not None:
        return found
    if download:
        from torchvision.datasets import FashionMNIST
        target = Path(root) if root is not None else paths.DOWNLOAD_ROOT
        try:
            FashionMNIST(str(target), train=True, download=True)
            FashionMNIST(str(target), train=False, download=True)
        except Exception as exc:  # network errors come in many types; the user needs one line
            raise DataError(f"could not download Fashion-MNIST into {str(target)!r}: {exc}") from exc
        found = find_fashion_dir(target)
        if found is not None:
            return found
    if root is not None:
        raise DataError(f"no Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] and the other three) in "
                        f"{str(root)!r}; pass --download to fetch them there")
    raise DataError(f"Fashion-MNIST is not installed: run `apt-get install {paths.DEBIAN_FASHION_PACKAGE}`, pass "
                    f"--data-root DIR with its IDX files, or --download")


def load_fashion(req: LoadRequest) -> TensorBundle:
    arrays = read_fashion_idx(_fashion_folder(req.root, req.download))
    return tensor_bundle("fashion-mnist", arrays, FASHION_CLASSES, *FASHION_MEAN_STD, req.train_limit,
                         req.test_limit, req.seed)
