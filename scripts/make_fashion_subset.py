"""Regenerate bar_core/assets/fashion-mnist-subset.npz: a stratified, byte-reproducible Fashion-MNIST subset.

1,000 training images per class (10,000) from the official training split and 200 test images per
class (2,000) from the official test split, chosen with a fixed seed and kept in their original
file order. Shipping this subset lets the app and the tests run offline on any machine; the full
set comes from Debian's `dataset-fashion-mnist` package (or --source DIR with the four IDX files).

    python scripts/make_fashion_subset.py [--source DIR] [--out PATH] [--check]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from bar_core.data import DEBIAN_FASHION_DIR, FASHION_CLASSES, SUBSET_PATH, find_fashion_dir, read_fashion_idx

REPO = Path(__file__).resolve().parent.parent


SEED = 20170825  # Fashion-MNIST's release date; any fixed value would do
TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200


def pick_per_class(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """`per_class` random indices of every class, sorted back into file order so the subset
    interleaves classes the way the original does."""
    picks = []
    for c in range(len(FASHION_CLASSES)):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise SystemExit(f"class {c} has only {len(members)} images, {per_class} requested")
        picks.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def build_subset(source: str | Path, seed: int = SEED, train_per_class: int = TRAIN_PER_CLASS,
                 test_per_class: int = TEST_PER_CLASS) -> dict[str, np.ndarray]:
    """The subset's arrays, a pure function of the source files and the arguments."""
    folder = find_fashion_dir(source)
    if folder is None:
        raise SystemExit(f"no Fashion-MNIST IDX files in {str(source)!r} "
                         f"(install Debian's dataset-fashion-mnist or pass --source DIR)")
    full = read_fashion_idx(folder)
    rng = np.random.default_rng(seed)
    train = pick_per_class(full["y_train"], train_per_class, rng)
    test = pick_per_class(full["y_test"], test_per_class, rng)
    return {"x_train": full["x_train"][train], "y_train": full["y_train"][train].astype(np.uint8),
            "x_test": full["x_test"][test], "y_test": full["y_test"][test].astype(np.uint8),
            "classes": np.array(FASHION_CLASSES)}


def save_subset(arrays: dict[str, np.ndarray], out: str | Path) -> str:
    """Write with np.savez_compressed (fixed zip timestamps, so the bytes repeat); return sha256."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(DEBIAN_FASHION_DIR), help="folder with the four IDX files")
    p.add_argument("--out", default=str(SUBSET_PATH))
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = p.parse_args(argv)
    arrays = build_subset(args.source, args.seed)
    if args.check:
        with np.load(args.out, allow_pickle=False) as z:
            same = set(z.files) == set(arrays) and all(np.array_equal(z[k], v) for k, v in arrays.items())
        print(f"{args.out}: {'identical' if same else 'DIFFERENT'}")
        return 0 if same else 1
    digest = save_subset(arrays, args.out)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {len(arrays['y_train'])} train / {len(arrays['y_test'])} test, "
          f"{size / 1e6:.2f} MB, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
