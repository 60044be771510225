"""Your own images: torchvision's ImageFolder at root/train and root/test (or root/val), one folder
per class, RGB resized to a fixed size and decoded from disk batch by batch."""
from __future__ import annotations

import numpy as np
import torch

from . import paths
from .batching import DataError, DataSpec, ImageFolderBundle, LoadRequest, limit_indices

IMAGEFOLDER_SIZE = (32, 32)


def load_imagefolder(req: LoadRequest) -> ImageFolderBundle:
    if req.root is None:
        raise DataError("imagefolder needs --data-root DIR with train/ and test/ (or val/) class subfolders")
    path = paths.require_dir(req.root, "imagefolder")
    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise DataError(f"imagefolder root {str(req.root)!r} must contain train/ and test/ (or val/) subfolders, "
                        f"one folder per class in each")
    from torch.utils.data import Subset
    from torchvision import transforms
    from torchvision.datasets import ImageFolder
    size = (req.image_size, req.image_size) if isinstance(req.image_size, int) else tuple(req.image_size)
    tf = transforms.Compose([transforms.Resize(size), transforms.PILToTensor()])
    try:
        train, test = ImageFolder(str(path / "train"), transform=tf), ImageFolder(str(test_dir), transform=tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"imagefolder root {str(req.root)!r}: {str(exc).splitlines()[0]}") from exc
    if train.classes != test.classes:
        raise DataError(f"imagefolder root {str(req.root)!r}: train/ and {test_dir.name}/ have different class "
                        f"folders ({len(train.classes)} vs {len(test.classes)})")
    train_idx = limit_indices(train.targets, req.train_limit, np.random.default_rng(req.seed))
    test_idx = limit_indices(test.targets, req.test_limit, None)
    train_set, test_set = Subset(train, train_idx.tolist()), Subset(test, test_idx.tolist())
    mean, std = _sample_stats(train_set)
    spec = DataSpec(name="imagefolder", in_channels=3, num_classes=len(train.classes), image_size=size,
                    classes=tuple(train.classes), train_size=len(train_set), test_size=len(test_set))
    return ImageFolderBundle(spec, mean, std, train_set, test_set)


def _sample_stats(dataset, n: int = 256) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std from up to `n` evenly spaced training images: an arbitrary folder has no
    published constants, and a few hundred images pin them down well enough for normalisation."""
    idx = np.linspace(0, len(dataset) - 1, num=min(n, len(dataset))).round().astype(int)
    x = torch.stack([dataset[int(i)][0] for i in np.unique(idx)]).double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())
