"""CIFAR-10 and CIFAR-100 through torchvision, from a local root holding cifar-10-batches-py/ or
cifar-100-python/ (or an earlier download), read once into memory as uint8."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import paths
from .batching import DataError, LoadRequest, TensorBundle, tensor_bundle

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class _Cifar:
    name: str
    torchvision_class: str
    folder: str  # what the root must contain
    mean: tuple[float, ...]  # of the official training set, on the [0, 1] scale
    std: tuple[float, ...]


CIFAR10 = _Cifar("cifar10", "CIFAR10", "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100 = _Cifar("cifar100", "CIFAR100", "cifar-100-python", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def downloaded(which: _Cifar) -> bool:
    return (paths.DOWNLOAD_ROOT / which.folder).is_dir()


def _load(which: _Cifar, req: LoadRequest) -> TensorBundle:
    import torchvision.datasets as tvd

    name, root = which.name, req.root
    if root is None:
        if not (req.download or downloaded(which)):
            raise DataError(f"{name} needs --data-root DIR (a folder containing {which.folder}/) or --download")
        root = paths.DOWNLOAD_ROOT
    elif not req.download:
        paths.require_dir(root, name)
    cls = getattr(tvd, which.torchvision_class)  # looked up per call, so a test can stand in for it
    try:
        train, test = (cls(str(Path(root).expanduser()), train=t, download=req.download) for t in (True, False))
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise DataError(f"{name} not found in {str(root)!r}: expected {which.folder}/ with the python-version "
                        f"batches{'' if req.download else ' (or pass --download)'}") from exc
    except Exception as exc:  # torchvision's download and unpickling raise many types; the user needs one line
        raise DataError(f"could not {'download' if req.download else 'read'} {name} in {str(root)!r}: {exc}") from exc
    arrays = {"x_train": train.data.transpose(0, 3, 1, 2), "y_train": np.asarray(train.targets),
              "x_test": test.data.transpose(0, 3, 1, 2), "y_test": np.asarray(test.targets)}
    return tensor_bundle(name, arrays, train.classes, which.mean, which.std, req.train_limit, req.test_limit,
                         req.seed)


def load_cifar10(req: LoadRequest) -> TensorBundle:
    return _load(CIFAR10, req)


def load_cifar100(req: LoadRequest) -> TensorBundle:
    return _load(CIFAR100, req)
