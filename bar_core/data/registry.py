"""The datasets, each declared once: what it is, what a model needs to know about it, where it comes
from, and its loader. `load_data`, `describe_datasets`, the CLI and the dashboard's form all read this
table; adding a dataset is a source module plus one entry here."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import cifar, fashion, imagefolder, subset, synthetic
from .batching import DataBundle, DataError, LoadRequest, check_limit
from .paths import DEBIAN_FASHION_PACKAGE

# whether a dataset reads a data root: never, when the user has one, or always (unless downloaded)
ROOT_UNUSED, ROOT_OPTIONAL, ROOT_REQUIRED = "unused", "optional", "required"


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset. A None size or class list means "whatever the files hold"."""
    name: str
    loader: Callable[[LoadRequest], DataBundle]
    available: Callable[[], bool]  # loadable here without a root and offline
    description: str
    needs: str                     # what the user has to provide, in words
    root: str                      # ROOT_UNUSED, ROOT_OPTIONAL or ROOT_REQUIRED
    in_channels: int
    num_classes: int | None
    image_size: tuple[int, int]
    classes: tuple[str, ...] | None = None
    train_size: int | None = None  # training images, where the source fixes it (time estimates)


_REGISTRY: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo(name="fashion-mnist-subset", loader=subset.load_subset, available=subset.shipped,
                description="Fashion-MNIST, stratified 10,000 train / 2,000 test, 1×28×28, 10 classes (shipped)",
                needs="nothing (shipped)", root=ROOT_UNUSED, in_channels=1, num_classes=10, image_size=(28, 28),
                classes=fashion.FASHION_CLASSES, train_size=10_000),
    DatasetInfo(name="fashion-mnist", loader=fashion.load_fashion, available=fashion.installed,
                description="Fashion-MNIST, full 60,000 train / 10,000 test, 1×28×28, 10 classes",
                needs=f"apt package {DEBIAN_FASHION_PACKAGE}, a root with the IDX files, or download",
                root=ROOT_OPTIONAL, in_channels=1, num_classes=10, image_size=(28, 28), classes=fashion.FASHION_CLASSES,
                train_size=60_000),
    DatasetInfo(name="cifar10", loader=cifar.load_cifar10, available=lambda: cifar.downloaded(cifar.CIFAR10),
                description="CIFAR-10, 50,000 train / 10,000 test, 3×32×32, 10 classes",
                needs="root or download", root=ROOT_REQUIRED, in_channels=3, num_classes=10, image_size=(32, 32),
                classes=cifar.CIFAR10_CLASSES, train_size=50_000),
    DatasetInfo(name="cifar100", loader=cifar.load_cifar100, available=lambda: cifar.downloaded(cifar.CIFAR100),
                description="CIFAR-100, 50,000 train / 10,000 test, 3×32×32, 100 classes",
                needs="root or download", root=ROOT_REQUIRED, in_channels=3, num_classes=100, image_size=(32, 32),
                train_size=50_000),
    DatasetInfo(name="imagefolder", loader=imagefolder.load_imagefolder, available=lambda: False,
                description="your own images, one folder per class, RGB resized to 32×32",
                needs="root with train/ and test/ (or val/)", root=ROOT_REQUIRED, in_channels=3, num_classes=None,
                image_size=imagefolder.IMAGEFOLDER_SIZE),
    DatasetInfo(name="synthetic", loader=synthetic.load_synthetic, available=lambda: True,
                description="noisy class templates, 2,000 train / 500 test, 1×28×28, 10 classes (for tests)",
                needs="nothing (generated)", root=ROOT_UNUSED, in_channels=1, num_classes=10, image_size=(28, 28),
                classes=synthetic.SYNTHETIC_CLASSES, train_size=2_000),
    DatasetInfo(name="synthetic-cifar", loader=synthetic.load_synthetic_cifar, available=lambda: True,
                description="noisy colour templates in CIFAR-10's shape and size, 50,000 train / 10,000 test, "
                            "3×32×32, 10 classes (timing the CIFAR models without CIFAR-10)",
                needs="nothing (generated)", root=ROOT_UNUSED, in_channels=3, num_classes=10, image_size=(32, 32),
                classes=synthetic.SYNTHETIC_CLASSES, train_size=synthetic.SYNTHETIC_CIFAR_SIZES[0]),
)}

DATASETS: tuple[str, ...] = tuple(_REGISTRY)
DEFAULT_DATASET = "fashion-mnist-subset"


def dataset_info(name: str) -> DatasetInfo:
    """The declaration of `name`; a DataError listing the allowed names if there is none."""
    if name not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return _REGISTRY[name]


def check_teacher_data(recorded: str | None, dataset: str, path) -> None:
    """A teacher trained on `recorded` may teach on `dataset` if they are one data source (the same
    classes, image size and channels: the Fashion-MNIST subset and the full set); else a DataError."""
    if not recorded or recorded == dataset or recorded not in _REGISTRY:
        return
    a, b = _REGISTRY[recorded], dataset_info(dataset)
    if a.classes and a.classes == b.classes and a.image_size == b.image_size and a.in_channels == b.in_channels:
        return
    raise DataError(f"teacher checkpoint {str(path)!r} was trained on {recorded!r}, whose classes differ from "
                    f"{dataset!r}'s; use a teacher of {dataset!r}, or --teacher none to pretrain one")


def load_data(name: str = DEFAULT_DATASET, root: str | None = None, *, download: bool = False,
              train_limit: int | None = None, test_limit: int | None = None, seed: int = 0,
              image_size: int | tuple[int, int] = imagefolder.IMAGEFOLDER_SIZE) -> DataBundle:
    """Load a dataset by name. `root` is the data folder where one is needed; `download` is the only
    way anything touches the network. `train_limit`/`test_limit` keep a class-balanced subset
    (train: chosen with `seed`; test: the first images of each class, the same for every seed, so
    accuracies stay comparable). `image_size` applies to imagefolder only."""
    info = dataset_info(name)
    req = LoadRequest(root=root, download=bool(download), train_limit=check_limit(train_limit, "train_limit"),
                      test_limit=check_limit(test_limit, "test_limit"), seed=int(seed), image_size=image_size)
    return info.loader(req)


def describe_datasets() -> list[dict]:
    """One row per dataset for `list-datasets` and the form: name, description, needs, available (here,
    offline), root (unused/optional/required), in_channels, num_classes."""
    return [{"name": d.name, "description": d.description, "needs": d.needs, "available": bool(d.available()),
             "root": d.root, "in_channels": d.in_channels, "num_classes": d.num_classes}
            for d in _REGISTRY.values()]
