"""A generated dataset for tests and smoke runs: seconds to make, no files, the same on every machine."""
from __future__ import annotations

import numpy as np

from .batching import LoadRequest, TensorBundle, tensor_bundle

SYNTHETIC_SIZES = (2000, 500)
SYNTHETIC_SEED = 20_240_531  # fixed: the synthetic set is one dataset, not a function of the run seed
SYNTHETIC_CLASSES = tuple(f"pattern {i}" for i in range(10))


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
