"""SVHN from fixture .mat files in the real cropped-digits layout (X [32,32,3,N], y [N,1])."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from robustad.data.formats import svhn
from robustad.errors import DataError, DatasetNotFoundError


def _images(n: int, offset: int) -> np.ndarray:
    """[32, 32, 3, n]: channel c of image i is constant 50*c + i + offset, except a marker
    pixel at row 1, column 2 (so rows and columns cannot be swapped unnoticed)."""
    x = np.empty((32, 32, 3, n), np.uint8)
    for i in range(n):
        for c in range(3):
            x[:, :, c, i] = 50 * c + i + offset
        x[1, 2, :, i] = 255
    return x


def make_svhn(root, n_train: int = 4, n_test: int = 3) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, n, off in (("train_32x32.mat", n_train, 0), ("test_32x32.mat", n_test, 10)):
        labels = np.array([[(off + i) % 10 + 1] for i in range(n)], np.uint8)  # 1..10, 10 = digit 0
        savemat(root / name, {"X": _images(n, off), "y": labels}, format="5")


def test_svhn_loads(tmp_path):
    make_svhn(tmp_path)
    data = svhn.load(tmp_path)
    assert data.train_x.shape == (4, 3, 32, 32) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (3, 3, 32, 32)
    assert data.train_x[2, 1, 5, 5] == 52 and data.test_x[0, 2, 0, 0] == 110
    assert data.train_x[0, 0, 1, 2] == 255 and data.train_x[0, 0, 2, 1] == 0
    # labels 1..10 with 10 meaning digit 0
    assert data.train_y.tolist() == [1, 2, 3, 4] and data.train_y.dtype == np.int64
    assert data.test_y.tolist() == [1, 2, 3]
    assert data.class_names == tuple("0123456789")
    assert svhn.check(tmp_path) == []


def test_svhn_maps_ten_to_zero(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    for name in svhn.FILES.values():
        savemat(tmp_path / name, {"X": _images(3, 0), "y": np.array([[10], [1], [9]], np.uint8)})
    assert svhn.load(tmp_path).train_y.tolist() == [0, 1, 9]
    assert svhn.load(tmp_path, image_size=8).train_x.shape == (3, 3, 8, 8)


def test_svhn_missing(tmp_path):
    problems = svhn.check(tmp_path)
    assert len(problems) == 2 and "train_32x32.mat" in problems[0]
    missing = tmp_path / "nowhere"
    assert svhn.check(missing)
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        svhn.load(missing)
    make_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="test_32x32.mat"):
        svhn.load(tmp_path)


def test_svhn_corrupt(tmp_path):
    make_svhn(tmp_path)
    bad = tmp_path / "test_32x32.mat"
    bad.write_bytes(bad.read_bytes()[:300])  # cut short inside the data
    with pytest.raises(DataError, match="test_32x32.mat"):
        svhn.load(tmp_path)
    bad.write_bytes(b"this is not a MATLAB file" * 10)
    with pytest.raises(DataError, match="test_32x32.mat"):
        svhn.load(tmp_path)
    assert any("test_32x32.mat" in p for p in svhn.check(tmp_path))


def test_svhn_wrong_layout(tmp_path):
    make_svhn(tmp_path)
    savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((3, 32, 32, 2), np.uint8), "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(DataError, match="train_32x32.mat"):
        svhn.load(tmp_path)
    assert any("train_32x32.mat" in p for p in svhn.check(tmp_path))
