"""Data loading: the shipped subset, batching contracts, the synthetic set, errors. Never downloads."""
import gzip
import hashlib
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bar_core import data as D
from bar_core.data import (
    DATASETS,
    DEFAULT_DATASET,
    DataError,
    DataSpec,
    dataset_info,
    describe_datasets,
    load_data,
    make_synthetic_cifar,
    random_crop_flip,
    read_idx,
    stratified_indices,
)

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "bar_core" / "assets"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these tensors are small, and with anything else busy on this 2-core
    machine a second OpenMP thread makes each op wait milliseconds at a barrier (measured 100x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def subset():
    return load_data()


@pytest.fixture(scope="module")
def synthetic():
    return load_data("synthetic")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Debian package and an empty download cache: what a bare machine looks like."""
    monkeypatch.setattr(D.paths, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(D.paths, "DOWNLOAD_ROOT", tmp_path / "no-cache")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)


def write_fashion(folder: Path, n_train: int = 40, n_test: int = 20, compress: bool = True) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": (np.arange(n_train) % 10).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": (np.arange(n_test) % 10).astype(np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in D.FASHION_FILES.items():
        write_idx(folder / (stem + (".gz" if compress else "")), arrays[key], compress)
    return arrays


# ---- the shipped subset

def test_default_is_the_shipped_subset(subset):
    assert DEFAULT_DATASET == "fashion-mnist-subset" and DEFAULT_DATASET in DATASETS
    assert subset.spec == DataSpec(name="fashion-mnist-subset", in_channels=1, num_classes=10, image_size=(28, 28),
                                   classes=D.FASHION_CLASSES, train_size=10_000, test_size=2_000)


def test_shipped_npz_is_stratified_uint8():
    with np.load(ASSETS / "fashion-mnist-subset.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["classes", "x_test", "x_train", "y_test", "y_train"]
        assert z["x_train"].shape == (10_000, 28, 28) and z["x_test"].shape == (2_000, 28, 28)
        for k in ("x_train", "y_train", "x_test", "y_test"):
            assert z[k].dtype == np.uint8, k
        assert np.bincount(z["y_train"], minlength=10).tolist() == [1000] * 10
        assert np.bincount(z["y_test"], minlength=10).tolist() == [200] * 10
        assert tuple(z["classes"]) == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                       "Sneaker", "Bag", "Ankle boot")
        assert z["x_train"].max() == 255 and z["x_train"].std() > 50, "real images, not blanks"
    assert (ASSETS / "fashion-mnist-subset.npz").stat().st_size < 8e6


def test_batches_dtype_shape_range(subset):
    x, y = next(subset.train_batches(64, seed=0, epoch=0))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 28, 28) and x.is_contiguous()
    assert y.dtype == torch.int64 and y.shape == (64,)
    assert 0 <= int(y.min()) and int(y.max()) < 10
    assert x.device.type == "cpu"


def test_normalisation_roughly_standard(subset):
    xs = torch.cat([x for x, _ in subset.test_batches(500)])
    assert abs(float(xs.mean())) < 0.05
    assert abs(float(xs.std()) - 1.0) < 0.05
    assert subset.mean == (0.2860,) and subset.std == (0.3530,)


def test_sample_input_is_first_test_images(subset):
    s = subset.sample_input(3)
    assert s.shape == (3, 1, 28, 28) and s.dtype == torch.float32
    assert torch.equal(s, next(subset.test_batches(3))[0])
    assert subset.sample_input().shape[0] == 2


# ---- batching contracts

def epoch_labels(bundle, seed, epoch, **kw):
    return torch.cat([y for _, y in bundle.train_batches(100, seed=seed, epoch=epoch, **kw)])


def test_train_batches_deterministic_per_seed_and_epoch(subset):
    a = list(subset.train_batches(100, seed=3, epoch=1, augment=True))
    b = list(subset.train_batches(100, seed=3, epoch=1, augment=True))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(epoch_labels(subset, 3, 1), epoch_labels(subset, 3, 2)), "epochs differ"
    assert not torch.equal(epoch_labels(subset, 3, 1), epoch_labels(subset, 4, 1)), "seeds differ"
    # Augmentation does not change which images come in which order.
    assert torch.equal(epoch_labels(subset, 3, 1), epoch_labels(subset, 3, 1, augment=True))


def test_global_rng_does_not_change_batches(subset):
    torch.manual_seed(1)
    a = next(subset.train_batches(32, seed=0, epoch=0, augment=True))[0]
    torch.manual_seed(2)
    b = next(subset.train_batches(32, seed=0, epoch=0, augment=True))[0]
    assert torch.equal(a, b)


def test_drop_last_and_partial_test_batch(subset):
    assert subset.num_train_batches(128) == 78
    batches = list(subset.train_batches(128, seed=0, epoch=0))
    assert len(batches) == 78 and all(len(y) == 128 for _, y in batches)
    ids = torch.cat([x.flatten(1) for x, _ in batches])
    assert len(torch.unique(ids, dim=0)) > 0.99 * len(ids), "no image drawn twice in an epoch"
    sizes = [len(y) for _, y in subset.test_batches(300)]
    assert sizes == [300] * 6 + [200]
    assert subset.num_train_batches(10_000) == 1


def test_test_batches_fixed_order(subset):
    a = torch.cat([y for _, y in subset.test_batches(700)])
    b = torch.cat([y for _, y in subset.test_batches(64)])
    assert torch.equal(a, b) and len(a) == 2_000


def test_bad_batch_size(subset):
    with pytest.raises(DataError, match="larger than the training set"):
        subset.num_train_batches(20_000)
    with pytest.raises(DataError, match="0"):
        next(subset.test_batches(0))


def test_random_crop_flip_matches_per_sample_reference():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, 2, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    dy, dx = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        ref = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)
    assert flip.any() and not flip.all()


# ---- limits

def test_limits_are_stratified_and_deterministic(subset):
    small = load_data(train_limit=50, test_limit=30, seed=1)
    assert small.spec.train_size == 50 and small.spec.test_size == 30
    ys = torch.cat([y for _, y in small.train_batches(10, seed=0, epoch=0)])
    assert torch.bincount(ys, minlength=10).tolist() == [5] * 10
    yt = torch.cat([y for _, y in small.test_batches(30)])
    assert torch.bincount(yt, minlength=10).tolist() == [3] * 10
    again = load_data(train_limit=50, test_limit=30, seed=1)
    assert torch.equal(small.sample_input(30), again.sample_input(30))
    other_seed = load_data(train_limit=50, test_limit=30, seed=2)
    assert torch.equal(small.sample_input(30), other_seed.sample_input(30)), "test subset ignores the seed"
    x1 = next(small.train_batches(50, seed=0, epoch=0))[0]
    x2 = next(other_seed.train_batches(50, seed=0, epoch=0))[0]
    assert not torch.equal(x1, x2), "train subset follows the seed"


def test_stratified_indices_round_robin():
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 1, 0])
    assert stratified_indices(labels, 3).tolist() == [0, 4, 5]
    assert stratified_indices(labels, 6).tolist() == [0, 1, 4, 5, 6, 7]
    assert stratified_indices(labels, 99).tolist() == list(range(9))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_limit(bad):
    with pytest.raises(DataError, match="train_limit"):
        load_data("synthetic", train_limit=bad)


# ---- synthetic

def test_synthetic_spec_and_determinism(synthetic):
    assert synthetic.spec.train_size == 2_000 and synthetic.spec.test_size == 500
    assert synthetic.spec.in_channels == 1 and synthetic.spec.num_classes == 10
    assert torch.equal(synthetic.sample_input(5), load_data("synthetic").sample_input(5))
    assert torch.bincount(torch.cat([y for _, y in synthetic.test_batches(500)])).tolist() == [50] * 10


def test_synthetic_is_learnable(synthetic):
    torch.manual_seed(0)
    model = torch.nn.Linear(28 * 28, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 0
    for epoch in range(10):
        for x, y in synthetic.train_batches(64, seed=0, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(model(x.flatten(1)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        if steps >= 300:
            break
    with torch.no_grad():
        correct = sum(int((model(x.flatten(1)).argmax(1) == y).sum()) for x, y in synthetic.test_batches(250))
    assert correct / 500 > 0.5, f"accuracy {correct / 500:.2f} after {steps} steps"


def test_synthetic_cifar_has_cifar10s_shape_and_is_the_same_everywhere():
    small = make_synthetic_cifar(300, 100)
    assert small["x_train"].shape == (300, 3, 32, 32) and small["x_train"].dtype == np.uint8
    assert np.bincount(small["y_test"]).tolist() == [10] * 10
    again = make_synthetic_cifar(300, 100)
    assert all(np.array_equal(small[k], again[k]) for k in small)
    # the colour channels differ (one template per channel, not a grey image three times)
    assert not np.array_equal(small["x_train"][:, 0], small["x_train"][:, 1])
    data = load_data("synthetic-cifar", train_limit=1_000, test_limit=500)
    assert (data.spec.in_channels, data.spec.image_size, data.spec.num_classes) == (3, (32, 32), 10)
    assert dataset_info("synthetic-cifar").train_size == 50_000 and len(data.mean) == 3
    x, y = next(iter(data.train_batches(64, seed=0, epoch=0)))
    assert x.shape == (64, 3, 32, 32) and abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2
    from bar_core.models import build_model
    assert build_model("wrn16_4", 3, 10)(x[:2]).shape == (2, 10)  # what it stands in for


# ---- errors

def test_unknown_name_lists_allowed():
    with pytest.raises(DataError) as e:
        load_data("mnist-ish")
    msg = str(e.value)
    assert "'mnist-ish'" in msg and all(n in msg for n in DATASETS) and "\n" not in msg


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "cifar100", "imagefolder"])
def test_missing_root_names_path(name, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        load_data(name, str(missing))
    assert str(missing) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_without_root_says_how(name, offline):
    with pytest.raises(DataError, match="--data-root|--download"):
        load_data(name)


def test_cifar_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_data("cifar10", str(tmp_path))


def test_fashion_not_installed_says_how(offline):
    with pytest.raises(DataError) as e:
        load_data("fashion-mnist")
    assert "dataset-fashion-mnist" in str(e.value) and "--download" in str(e.value)


def test_fashion_root_without_files(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_data("fashion-mnist", str(tmp_path))


def test_imagefolder_wrong_layout(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="train/ and test/"):
        load_data("imagefolder", str(tmp_path))
    with pytest.raises(DataError, match="--data-root"):
        load_data("imagefolder")


# ---- file formats and other sources

@pytest.mark.parametrize("compress", [True, False])
def test_read_idx(tmp_path, compress):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", a, compress)
    assert np.array_equal(read_idx(tmp_path / "a"), a)


def test_read_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="not an IDX"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 4), np.uint8), False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(DataError, match="header promises"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("layout, compress", [("", True), ("FashionMNIST/raw", False)])
def test_fashion_from_root(tmp_path, layout, compress):
    arrays = write_fashion(tmp_path / layout if layout else tmp_path, compress=compress)
    b = load_data("fashion-mnist", str(tmp_path))
    assert b.spec.train_size == 40 and b.spec.test_size == 20 and b.spec.classes == D.FASHION_CLASSES
    y = torch.cat([y for _, y in b.test_batches(7)])
    assert y.tolist() == arrays["y_test"].tolist()


def test_imagefolder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for cls in ("cat", "dog", "eel"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png")
    Image.fromarray(np.zeros((9, 9), np.uint8), mode="L").save(tmp_path / "val" / "eel" / "gray.png")
    b = load_data("imagefolder", str(tmp_path))
    assert b.spec.classes == ("cat", "dog", "eel") and b.spec.in_channels == 3 and b.spec.image_size == (32, 32)
    assert b.spec.train_size == 12 and b.spec.test_size == 7
    x, y = next(b.train_batches(5, seed=0, epoch=0, augment=True))
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert b.num_train_batches(5) == 2 and len(list(b.train_batches(5, seed=0, epoch=0))) == 2
    assert [len(y) for _, y in b.test_batches(4)] == [4, 3]
    assert torch.equal(next(b.train_batches(5, seed=1, epoch=2))[1], next(b.train_batches(5, seed=1, epoch=2))[1])


def test_cifar_arrays_become_nchw(tmp_path, monkeypatch):
    """torchvision's real CIFAR classes check file checksums, so a stand-in exercises the conversion."""
    import torchvision.datasets as tvd

    class FakeCIFAR10:
        classes = [f"c{i}" for i in range(10)]

        def __init__(self, root, train, download):
            assert download is False
            n = 30 if train else 10
            self.data = np.zeros((n, 32, 32, 3), np.uint8)
            self.data[..., 0], self.data[..., 2] = 200, 10   # red-ish images, channel last
            self.targets = list(np.arange(n) % 10)

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    b = load_data("cifar10", str(tmp_path), train_limit=20)
    assert b.spec.in_channels == 3 and b.spec.image_size == (32, 32) and b.spec.train_size == 20
    assert b.spec.test_size == 10 and b.spec.classes[3] == "c3"
    x, _ = next(b.train_batches(10, seed=0, epoch=0, augment=True))
    assert x.shape == (10, 3, 32, 32)
    centre = next(b.test_batches(10))[0][:, :, 16, 16]
    expected = [(200 / 255 - 0.4914) / 0.2470, (0 - 0.4822) / 0.2435, (10 / 255 - 0.4465) / 0.2616]
    assert torch.allclose(centre, torch.tensor(expected).expand(10, 3), atol=1e-5)


def test_describe_datasets():
    rows = describe_datasets()
    assert [r["name"] for r in rows] == list(DATASETS)
    for r in rows:
        assert {"name", "description", "needs", "available"} <= set(r) and isinstance(r["available"], bool)
    by_name = {r["name"]: r for r in rows}
    assert by_name["fashion-mnist-subset"]["available"] and by_name["synthetic"]["available"]


# ---- the shipped file is what the script makes

def test_licence_file():
    text = (ASSETS / "FASHION-MNIST-LICENSE.txt").read_text()
    for needle in ("MIT", "Zalando SE", "1708.07747", "Han Xiao", "zalandoresearch/fashion-mnist",
                   "make_fashion_subset.py"):
        assert needle in text


@pytest.mark.skipif(D.find_fashion_dir(D.DEBIAN_FASHION_DIR) is None,
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_script_reproduces_shipped_npz(tmp_path):
    spec = importlib.util.spec_from_file_location("make_fashion_subset", REPO / "scripts" / "make_fashion_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path / "a.npz")]) == 0
    shipped = (ASSETS / "fashion-mnist-subset.npz").read_bytes()
    made = (tmp_path / "a.npz").read_bytes()
    assert hashlib.sha256(made).hexdigest() == hashlib.sha256(shipped).hexdigest()


def test_train_batches_name_their_images_and_train_in_order_holds_every_image_once(subset):
    every = torch.cat(list(subset.train_in_order(3000)))  # 10,000 images: three full batches and one of 1,000
    assert every.shape == (subset.spec.train_size, 1, 28, 28)
    x, y, index = next(subset.train_batches(64, seed=0, epoch=0, with_index=True))
    assert index.shape == (64,) and len(set(index.tolist())) == 64
    assert torch.equal(x, every[index])
    x2, y2 = next(subset.train_batches(64, seed=0, epoch=0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
