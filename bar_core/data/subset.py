"""The shipped Fashion-MNIST subset (bar_core/assets, made by scripts/make_fashion_subset.py): 1,000
training and 200 test images per class, so the demo and the tests run offline anywhere."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import paths
from .batching import DataError, LoadRequest, TensorBundle, tensor_bundle
from .fashion import FASHION_MEAN_STD


def shipped() -> bool:
    return paths.SUBSET_PATH.is_file()


def load_subset(req: LoadRequest) -> TensorBundle:
    """The subset from the package, or from `req.root` when a copy of the file lies there."""
    path = Path(req.root) / paths.SUBSET_PATH.name if req.root else paths.SUBSET_PATH
    if not path.is_file():
        raise DataError(f"the shipped Fashion-MNIST subset {str(path)!r} is missing; "
                        f"regenerate it with scripts/make_fashion_subset.py")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        classes = tuple(str(c) for c in z["classes"])
    return tensor_bundle("fashion-mnist-subset", arrays, classes, *FASHION_MEAN_STD, req.train_limit,
                         req.test_limit, req.seed)
