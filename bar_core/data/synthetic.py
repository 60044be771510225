"""Generated datasets, no files, the same on every machine: `synthetic` for tests and smoke runs
(seconds to make), `synthetic-cifar` in CIFAR-10's shape and size for timing runs of the CIFAR models
where CIFAR-10 is not on the machine (a GPU host without network)."""
from __future__ import annotations

import numpy as np

from .batching import LoadRequest, TensorBundle, tensor_bundle

SYNTHETIC_SIZES = (2000, 500)
SYNTHETIC_SEED = 20_240_531  # fixed: the synthetic set is one dataset, not a function of the run seed
SYNTHETIC_CLASSES = tuple(f"pattern {i}" for i in range(10))
SYNTHETIC_CIFAR_SIZES = (50_000, 10_000)  # CIFAR-10's: epochs take as many steps as there
SYNTHETIC_CIFAR_SHAPE = (3, 32, 32)
_CHUNK = 5_000  # images generated at a time: the float32 noise of 50,000 colour images would be 600 MB


def make_synthetic(train_size: int = SYNTHETIC_SIZES[0], test_size: int = SYNTHETIC_SIZES[1],
                   seed: int = SYNTHETIC_SEED) -> dict[str, np.ndarray]:
    """10 classes of 1×28×28 uint8 images: per class a blocky random template (40% its own pattern,
    60% a pattern all classes share), drawn with random contrast, a shift of up to 2 px and strong
    Gaussian noise. Learnable but not saturated: after 300 Adam steps (batch 64) logistic regression
    and a 2-conv CNN both reach ~87% test accuracy, so pruning damage stays visible."""
    rng = np.random.default_rng(seed)
    coarse = 0.4 * rng.random((10, 7, 7)) + 0.6 * rng.random((1, 7, 7))
    templates = np.kron(coarse, np.ones((4, 4)))  # 10 × 28 × 28, low-frequency patterns
    low = templates.min(axis=(1, 2), keepdims=True)
    templates = (templates - low) / np.ptp(templates, axis=(1, 2), keepdims=True) * 200 + 20

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = templates[y] * rng.uniform(0.6, 1.0, size=(n, 1, 1))
        shifts = rng.integers(-2, 3, size=(n, 2))
        for s in (-2, -1, 1, 2):  # one vectorised roll per (shift, axis) instead of one per image
            for axis in (0, 1):
                sel = shifts[:, axis] == s
                x[sel] = np.roll(x[sel], s, axis=axis + 1)
        x += rng.normal(0.0, 80.0, size=x.shape)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(train_size)
    x_test, y_test = draw(test_size)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def load_synthetic(req: LoadRequest) -> TensorBundle:
    arrays = make_synthetic()
    x = arrays["x_train"].astype(np.float64) / 255.0
    return tensor_bundle("synthetic", arrays, SYNTHETIC_CLASSES, (x.mean(),), (x.std(),), req.train_limit,
                         req.test_limit, req.seed)


def make_synthetic_cifar(train_size: int = SYNTHETIC_CIFAR_SIZES[0], test_size: int = SYNTHETIC_CIFAR_SIZES[1],
                         seed: int = SYNTHETIC_SEED) -> dict[str, np.ndarray]:
    """10 classes of 3×32×32 uint8 images, drawn like `make_synthetic`'s (a blocky colour template per
    class, 40 % its own and 60 % shared, random contrast, a shift of up to 2 px, Gaussian noise),
    `_CHUNK` images at a time. For timing, not for accuracy: it has CIFAR-10's shape and size, not
    its difficulty (logistic regression separates a 2,000-image draw of it completely)."""
    rng = np.random.default_rng(seed)
    c, h, w = SYNTHETIC_CIFAR_SHAPE
    coarse = 0.4 * rng.random((10, c, h // 4, w // 4)) + 0.6 * rng.random((1, c, h // 4, w // 4))
    templates = np.kron(coarse, np.ones((1, 4, 4))).astype(np.float32)  # 10 × 3 × 32 × 32
    low = templates.min(axis=(1, 2, 3), keepdims=True)
    templates = (templates - low) / np.ptp(templates, axis=(1, 2, 3), keepdims=True) * 200 + 20

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = np.empty((n, c, h, w), np.uint8)
        for start in range(0, n, _CHUNK):
            part = y[start:start + _CHUNK]
            xs = templates[part] * rng.uniform(0.6, 1.0, size=(len(part), 1, 1, 1)).astype(np.float32)
            shifts = rng.integers(-2, 3, size=(len(part), 2))
            for s in (-2, -1, 1, 2):
                for axis in (0, 1):
                    sel = shifts[:, axis] == s
                    xs[sel] = np.roll(xs[sel], s, axis=axis + 2)
            xs += 60.0 * rng.standard_normal(size=xs.shape, dtype=np.float32)  # float32 draws: twice as fast
            x[start:start + len(part)] = np.clip(np.rint(xs), 0, 255)
        return x, y.astype(np.int64)

    x_train, y_train = draw(train_size)
    x_test, y_test = draw(test_size)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def load_synthetic_cifar(req: LoadRequest) -> TensorBundle:
    arrays = make_synthetic_cifar()
    x = arrays["x_train"][:_CHUNK].astype(np.float64) / 255.0  # per-channel statistics, as CIFAR's loader keeps
    return tensor_bundle("synthetic-cifar", arrays, SYNTHETIC_CLASSES, tuple(x.mean(axis=(0, 2, 3))),
                         tuple(x.std(axis=(0, 2, 3))), req.train_limit, req.test_limit, req.seed)
