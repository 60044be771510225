"""Batching, shared by every dataset: a loaded dataset is a DataBundle that yields normalised float32
batches on a device.

In-memory datasets are uint8 NCHW tensors (a 60k Fashion-MNIST train set is 47 MB, CIFAR-10 150 MB)
converted to float32 one batch at a time, so a batch is a tensor index and a fused multiply-add, with
no per-sample Python work and no DataLoader workers (the 2 cores this runs on are the training's).
Shuffling and augmentation draw from CPU generators seeded by (seed, epoch) alone, so a run gets the
same batches on every device and a resumed run redraws exactly what it would have drawn.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class DataError(ValueError):
    """A user-facing, one-line problem with the requested data (name, root, layout, sizes)."""


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about a dataset, and what a run records about it."""
    name: str
    in_channels: int
    num_classes: int
    image_size: tuple[int, int]
    classes: tuple[str, ...]
    train_size: int
    test_size: int


@dataclass(frozen=True)
class LoadRequest:
    """What a caller of load_data asks for; every source's loader takes one."""
    root: str | None = None
    download: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    seed: int = 0
    image_size: tuple[int, int] = (32, 32)  # sources that resize (imagefolder) use it


def _generator(*keys: int) -> torch.Generator:
    """A CPU generator whose state depends only on `keys`, mixed so that nearby keys
    (seed 1 epoch 2 vs seed 2 epoch 1) give unrelated streams."""
    state = np.random.SeedSequence([int(k) % 2**64 for k in keys]).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def _crop_padding(height: int) -> int:
    """Standard padding for random-crop augmentation: 2 px at MNIST scale, 4 px at CIFAR scale."""
    return 2 if height <= 28 else 4


def random_crop_flip(x: Tensor, pad: int, gen: torch.Generator) -> Tensor:
    """Random crop after zero padding, plus a horizontal flip with probability 1/2, for a whole
    uint8 NCHW batch at once: each sample's crop window (and its flip, as reversed column order)
    becomes one gather over the padded images."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    wp = w + 2 * pad
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, flat).reshape(b, c, h, w)


class DataBundle:
    """A loaded dataset: its spec plus train/test batches as normalised float32 on a device.

    Subclasses supply uint8 batches; this class shuffles, augments and normalises them, so every
    dataset behaves the same way for the trainer."""

    def __init__(self, spec: DataSpec, mean: tuple[float, ...], std: tuple[float, ...]):
        self.spec = spec
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        m, s = torch.tensor(self.mean), torch.tensor(self.std)
        # (x / 255 - mean) / std == x * scale - shift: one multiply-add per element at batch time.
        self._scale = (1.0 / (255.0 * s)).view(1, -1, 1, 1)
        self._shift = (m / s).view(1, -1, 1, 1)
        self._affine: dict[str, tuple[Tensor, Tensor]] = {}

    def __repr__(self) -> str:
        s = self.spec
        return f"{type(self).__name__}({s.name!r}, train={s.train_size}, test={s.test_size})"

    # ---- public API

    def num_train_batches(self, batch_size: int) -> int:
        """Full batches per epoch (drop_last): every step sees exactly `batch_size` images."""
        return self.spec.train_size // self._check_batch_size(batch_size, self.spec.train_size, "training")

    def train_batches(self, batch_size: int, *, seed: int, epoch: int, augment: bool = False,
                      device="cpu", with_index: bool = False) -> Iterator[tuple[Tensor, ...]]:
        """One shuffled epoch, a pure function of (seed, epoch); the last partial batch is dropped.
        (x, y), or (x, y, i) with `with_index`: i the batch's indices into the training set."""
        n_batches = self.num_train_batches(batch_size)
        perm = torch.randperm(self.spec.train_size, generator=_generator(seed, epoch, 0))
        aug_gen = _generator(seed, epoch, 1) if augment else None
        pad = _crop_padding(self.spec.image_size[0])
        index = perm[: n_batches * batch_size].view(n_batches, batch_size)
        for i, (x, y) in enumerate(self._train_uint8(index, device)):
            if aug_gen is not None:
                x = random_crop_flip(x, pad, aug_gen)
            yield (self._normalise(x), y, index[i]) if with_index else (self._normalise(x), y)

    def train_in_order(self, batch_size: int, device="cpu") -> Iterator[Tensor]:
        """Every training image once, normalised, in stored order and never augmented; the last
        batch may be smaller."""
        index = torch.arange(self.spec.train_size)
        n_full = self.spec.train_size // batch_size
        batches = [index[: n_full * batch_size].view(n_full, batch_size)]
        if self.spec.train_size % batch_size:
            batches.append(index[n_full * batch_size:].view(1, -1))
        for rows in batches:
            for x, _ in self._train_uint8(rows, device):
                yield self._normalise(x)

    def test_batches(self, batch_size: int, device="cpu") -> Iterator[tuple[Tensor, Tensor]]:
        """The whole test set in its stored order; the last batch may be smaller."""
        self._check_batch_size(batch_size, None, "test")
        for x, y in self._test_uint8(batch_size, device):
            yield self._normalise(x), y

    def sample_input(self, n: int = 2) -> Tensor:
        """The first `n` test images, normalised, on the CPU: real inputs for shape/area probes."""
        n = max(1, min(int(n), self.spec.test_size))
        return next(self.test_batches(n))[0]

    # ---- for subclasses

    def _train_uint8(self, index_batches: Tensor, device) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def _test_uint8(self, batch_size: int, device) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    # ---- helpers

    def _normalise(self, x: Tensor) -> Tensor:
        key = str(x.device)
        if key not in self._affine:
            self._affine[key] = (self._scale.to(x.device), self._shift.to(x.device))
        scale, shift = self._affine[key]
        return x.float().mul_(scale).sub_(shift)

    @staticmethod
    def _check_batch_size(batch_size: int, limit: int | None, what: str) -> int:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DataError(f"batch size must be a positive integer, got {batch_size!r}")
        if limit is not None and batch_size > limit:
            raise DataError(f"batch size {batch_size} is larger than the {what} set ({limit} images)")
        return int(batch_size)


class TensorBundle(DataBundle):
    """A dataset held in memory as uint8 NCHW images and int64 labels."""

    def __init__(self, spec: DataSpec, mean, std, x_train: Tensor, y_train: Tensor, x_test: Tensor,
                 y_test: Tensor):
        super().__init__(spec, mean, std)
        self._cpu = (x_train.contiguous(), y_train.long(), x_test.contiguous(), y_test.long())
        self._on_device: dict[str, tuple[Tensor, ...]] = {"cpu": self._cpu}

    def _tensors(self, device) -> tuple[Tensor, ...]:
        """The four tensors on `device`, copied there once: on a GPU, batches are then indexed
        where they are used instead of crossing the bus every step."""
        device = torch.device(device)
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = tuple(t.to(device) for t in self._cpu)
        return self._on_device[key]

    def _train_uint8(self, index_batches, device):
        x, y, _, _ = self._tensors(device)
        index_batches = index_batches.to(x.device)
        for idx in index_batches:
            yield x.index_select(0, idx), y.index_select(0, idx)

    def _test_uint8(self, batch_size, device):
        _, _, x, y = self._tensors(device)
        for start in range(0, len(y), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]


class ImageFolderBundle(DataBundle):
    """Images decoded from disk per batch through a DataLoader (num_workers=0): folders can be
    larger than memory, and decoding in the training thread keeps the second core free."""

    def __init__(self, spec: DataSpec, mean, std, train_set, test_set):
        super().__init__(spec, mean, std)
        self._train_set, self._test_set = train_set, test_set

    def _train_uint8(self, index_batches, device):
        from torch.utils.data import DataLoader
        loader = DataLoader(self._train_set, batch_sampler=index_batches.tolist(), num_workers=0)
        for x, y in loader:
            yield x.to(device), y.long().to(device)

    def _test_uint8(self, batch_size, device):
        from torch.utils.data import DataLoader
        for x, y in DataLoader(self._test_set, batch_size=batch_size, shuffle=False, num_workers=0):
            yield x.to(device), y.long().to(device)


# --------------------------------------------------------------------------------------------------
# Limits: a class-balanced part of a dataset


def stratified_indices(labels: np.ndarray, limit: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of `limit` samples with classes as balanced as possible, returned in stored order.

    Picks round-robin over classes (every class's k-th sample before any class's (k+1)-th), so
    class counts differ by at most one unless a class runs out. Without `rng` each class is taken
    from its start (first-N per class); with it, each class is shuffled first."""
    labels = np.asarray(labels)
    n = len(labels)
    if limit >= n:
        return np.arange(n)
    order = np.arange(n) if rng is None else rng.permutation(n)
    lab = labels[order].astype(np.int64)
    by_class = np.argsort(lab, kind="stable")
    counts = np.bincount(lab)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - starts
    picked = np.lexsort((lab, rank))[:limit]
    return np.sort(order[picked])


def check_limit(value, what: str) -> int | None:
    """`value` as an int, or None; anything else is a DataError naming `what`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{what} must be a positive integer or None, got {value!r}")
    return int(value)


def limit_indices(targets, limit: int | None, rng) -> np.ndarray:
    """All indices, or a stratified `limit` of them (shuffled per class with `rng` when given)."""
    targets = np.asarray(targets)
    return np.arange(len(targets)) if limit is None else stratified_indices(targets, limit, rng)


def _limited(x: np.ndarray, y: np.ndarray, limit: int | None, rng) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(y):
        return x, y  # no copy of a full set
    idx = stratified_indices(y, limit, rng)
    return x[idx], y[idx]


def tensor_bundle(name: str, arrays: dict[str, np.ndarray], classes, mean, std, train_limit: int | None,
                  test_limit: int | None, seed: int) -> TensorBundle:
    """Apply the limits (train: picked with `seed`; test: the first images of each class) and wrap
    numpy arrays (NHW or NCHW uint8, as x_train/y_train/x_test/y_test) as an in-memory bundle."""
    train = _limited(arrays["x_train"], arrays["y_train"], train_limit, np.random.default_rng(seed))
    test = _limited(arrays["x_test"], arrays["y_test"], test_limit, None)
    tensors = []
    for x, y in (train, test):
        x = x[:, None] if x.ndim == 3 else x
        tensors += [torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8)),
                    torch.from_numpy(np.asarray(y, dtype=np.int64))]
    c, h, w = tensors[0].shape[1:]
    spec = DataSpec(name=name, in_channels=int(c), num_classes=len(classes), image_size=(int(h), int(w)),
                    classes=tuple(classes), train_size=len(tensors[1]), test_size=len(tensors[3]))
    return TensorBundle(spec, mean, std, *tensors)
