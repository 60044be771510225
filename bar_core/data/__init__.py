"""Datasets for BAR Explorer: load once, batch fast, fail with one clear line.

- `batching`: DataBundle and its in-memory / from-disk kinds, augmentation, class-balanced limits.
- one module per source: `subset` (shipped), `fashion` (IDX files), `cifar`, `imagefolder`, `synthetic`.
- `registry`: every dataset declared once; `load_data` and `describe_datasets` read it.
- `paths`: where data lives on this machine (loaders read `paths.X` at call time: to point them
  elsewhere, set `bar_core.data.paths.DOWNLOAD_ROOT`, not the copy re-exported here).

Nothing here touches the network unless a caller passes `download=True`.
"""
from __future__ import annotations

from . import paths
from .batching import (
    DataBundle,
    DataError,
    DataSpec,
    ImageFolderBundle,
    LoadRequest,
    TensorBundle,
    random_crop_flip,
    stratified_indices,
)
from .fashion import FASHION_CLASSES, FASHION_FILES, find_fashion_dir, read_fashion_idx, read_idx
from .imagefolder import IMAGEFOLDER_SIZE
from .paths import ASSETS, DEBIAN_FASHION_DIR, DEBIAN_FASHION_PACKAGE, DOWNLOAD_ROOT, SUBSET_PATH
from .registry import (
    DATASETS,
    DEFAULT_DATASET,
    ROOT_OPTIONAL,
    ROOT_REQUIRED,
    ROOT_UNUSED,
    DatasetInfo,
    dataset_info,
    describe_datasets,
    load_data,
)
from .synthetic import SYNTHETIC_SEED, SYNTHETIC_SIZES, make_synthetic, make_synthetic_cifar

__all__ = [
    "ASSETS", "DATASETS", "DEBIAN_FASHION_DIR", "DEBIAN_FASHION_PACKAGE", "DEFAULT_DATASET", "DOWNLOAD_ROOT",
    "FASHION_CLASSES", "FASHION_FILES", "IMAGEFOLDER_SIZE", "ROOT_OPTIONAL", "ROOT_REQUIRED", "ROOT_UNUSED",
    "SUBSET_PATH", "SYNTHETIC_SEED", "SYNTHETIC_SIZES", "DataBundle", "DataError", "DataSpec", "DatasetInfo",
    "ImageFolderBundle", "LoadRequest", "TensorBundle", "dataset_info", "describe_datasets", "find_fashion_dir",
    "load_data", "make_synthetic", "make_synthetic_cifar", "paths", "random_crop_flip", "read_fashion_idx", "read_idx",
    "stratified_indices",
]
