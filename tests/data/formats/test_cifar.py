"""CIFAR-10 and CIFAR-100 from fixture batches in the real "python version" format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from robustad.data.formats import ClassData, cifar10, cifar100
from robustad.errors import DataError, DatasetNotFoundError


def _planes(n: int, offset: int) -> np.ndarray:
    """Reference images [n, 3, 32, 32]: red = position in the row-major plane, green = its
    mirror, blue = the image number, so any mix-up of channels, rows or images shows."""
    pos = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    out = np.empty((n, 3, 32, 32), np.uint8)
    for i in range(n):
        out[i, 0] = pos
        out[i, 1] = 255 - pos
        out[i, 2] = (offset + i) % 256
    return out


def _rows(images: np.ndarray) -> np.ndarray:
    # The CIFAR row: 1024 red values, then 1024 green, then 1024 blue, each plane row-major.
    return np.stack([np.concatenate([img[0].ravel(), img[1].ravel(), img[2].ravel()]) for img in images])


def _write(path, batch: dict) -> None:
    path.write_bytes(pickle.dumps(batch, protocol=2))


def make_cifar10(root, per_batch: int = 2) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    all_images = []
    for b, name in enumerate(names):
        images = _planes(per_batch, offset=b * per_batch)
        all_images.append(images)
        _write(folder / name, {
            b"batch_label": f"batch {b}".encode(),
            b"labels": [(b * per_batch + i) % 10 for i in range(per_batch)],
            b"data": _rows(images),
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)],
        })
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in cifar10.CLASS_NAMES]}, protocol=2))
    return np.concatenate(all_images)


def make_cifar100(root, n_train: int = 4, n_test: int = 3) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, off in (("train", n_train, 0), ("test", n_test, 100)):
        _write(folder / name, {
            b"filenames": [b"f.png"] * n,
            b"batch_label": name.encode(),
            b"fine_labels": [(off + 5 * i) % 100 for i in range(n)],
            b"coarse_labels": [(off + 7 * i) % 20 for i in range(n)],
            b"data": _rows(_planes(n, offset=off)),
        })


def test_cifar10_loads_in_order(tmp_path):
    expected = make_cifar10(tmp_path)
    data = cifar10.load(tmp_path)
    assert isinstance(data, ClassData)
    assert data.train_x.shape == (10, 3, 32, 32) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(data.train_x, expected[:10])
    np.testing.assert_array_equal(data.test_x, expected[10:])
    # Channel and row order, spelled out: red pixel (row 1, col 2) is 32 + 2.
    assert data.train_x[0, 0, 1, 2] == 34 and data.train_x[0, 1, 1, 2] == 255 - 34
    assert data.train_x[3, 2, 31, 31] == 3
    assert data.train_y.tolist() == [i % 10 for i in range(10)] and data.train_y.dtype == np.int64
    assert data.test_y.tolist() == [0, 1]
    assert data.class_names == cifar10.CLASS_NAMES and len(data.class_names) == 10
    assert data.class_names[0] == "airplane" and data.class_names[9] == "truck"


def test_cifar10_root_may_be_the_batch_folder(tmp_path):
    make_cifar10(tmp_path, per_batch=1)
    assert cifar10.check(tmp_path / "cifar-10-batches-py") == []
    assert len(cifar10.load(tmp_path / "cifar-10-batches-py").train_x) == 5


def test_cifar10_resize(tmp_path):
    make_cifar10(tmp_path, per_batch=1)
    small = cifar10.load(tmp_path, image_size=16)
    assert small.train_x.shape == (5, 3, 16, 16) and small.train_x.dtype == np.float32
    assert 0.0 <= small.train_x.min() and small.train_x.max() <= 1.0
    np.testing.assert_allclose(small.test_x[0, 2], 5 / 255, atol=1e-5)  # a constant plane stays constant
    assert cifar10.load(tmp_path, image_size=32).train_x.dtype == np.uint8
    with pytest.raises(DataError, match="image_size"):
        cifar10.load(tmp_path, image_size=0)


def test_cifar10_check_and_missing(tmp_path):
    make_cifar10(tmp_path, per_batch=1)
    assert cifar10.check(tmp_path) == []
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    problems = cifar10.check(tmp_path)
    assert len(problems) == 1 and "data_batch_3" in problems[0]
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        cifar10.load(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cifar10.check(empty) and "cifar-10-batches-py" in cifar10.check(empty)[0]
    missing = tmp_path / "nowhere"
    assert cifar10.check(missing)  # no exception
    with pytest.raises(DatasetNotFoundError) as info:
        cifar10.load(missing)
    assert str(missing / "cifar-10-batches-py") in str(info.value) and "test_batch" in str(info.value)


def test_cifar10_corrupt_batch(tmp_path):
    make_cifar10(tmp_path, per_batch=1)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(b"\x80\x02}q\x00(U\x04data")  # cut short
    with pytest.raises(DataError, match="test_batch"):
        cifar10.load(tmp_path)


def test_cifar100_coarse_labels(tmp_path):
    make_cifar100(tmp_path)
    data = cifar100.load(tmp_path)
    assert data.train_x.shape == (4, 3, 32, 32) and data.test_x.shape == (3, 3, 32, 32)
    assert data.train_y.tolist() == [0, 7, 14, 1]  # coarse, not fine, labels
    assert data.test_y.tolist() == [0, 7, 14]
    np.testing.assert_array_equal(data.test_x, _planes(3, offset=100))
    assert len(data.class_names) == 20
    assert data.class_names[0] == "aquatic_mammals" and data.class_names[19] == "vehicles_2"
    assert data.class_names[9] == "large_man-made_outdoor_things"
    assert cifar100.check(tmp_path) == []
    assert cifar100.load(tmp_path / "cifar-100-python").train_y.tolist() == [0, 7, 14, 1]


def test_cifar100_missing_and_corrupt(tmp_path):
    assert cifar100.check(tmp_path) and "cifar-100-python" in cifar100.check(tmp_path)[0]
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        cifar100.load(tmp_path / "absent")
    make_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").unlink()
    assert any("test" in p for p in cifar100.check(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="test"):
        cifar100.load(tmp_path)
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="cifar-100-python.test"):
        cifar100.load(tmp_path)
