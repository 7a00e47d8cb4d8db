"""ImageNet-30 from fixture class folders of JPEG files (sizes differ, test folders nested)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robustad.data.formats import imagenet30
from robustad.errors import DataError, DatasetNotFoundError

COLOURS = {"airliner": (255, 0, 0), "banjo": (0, 255, 0), "cannon": (0, 0, 255)}


def _jpeg(path, colour, size) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=95)


def make_imagenet30(root, train="one_class_train", test="one_class_test") -> None:
    for k, (name, colour) in enumerate(COLOURS.items()):
        for i in range(2):
            _jpeg(root / train / name / f"n0{k}_{i}.JPEG", colour, (40 + 10 * i, 30))
        # the test set nests images one level deeper, as some copies do
        _jpeg(root / test / name / name / f"{k}_0.JPEG", colour, (25, 50))
    (root / train / "airliner" / ".hidden.JPEG").write_bytes(b"ignored")


def test_imagenet30_loads(tmp_path):
    make_imagenet30(tmp_path)
    assert imagenet30.class_names(tmp_path) == ("airliner", "banjo", "cannon")
    assert imagenet30.CLASS_NAMES(tmp_path) == ("airliner", "banjo", "cannon")
    assert imagenet30.check(tmp_path) == []
    data = imagenet30.load(tmp_path, image_size=16)
    assert data.train_x.shape == (6, 3, 16, 16) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (3, 3, 16, 16)
    assert data.train_y.tolist() == [0, 0, 1, 1, 2, 2] and data.test_y.tolist() == [0, 1, 2]
    assert data.class_names == ("airliner", "banjo", "cannon")
    # colour k is class k: the dominant channel of every image is its label
    assert data.train_x.mean(axis=(2, 3)).argmax(axis=1).tolist() == data.train_y.tolist()
    assert data.test_x.mean(axis=(2, 3)).argmax(axis=1).tolist() == data.test_y.tolist()
    assert data.train_x.max() > 200  # whole 0..255 range, not floats


def test_imagenet30_default_size_and_alias_folders(tmp_path):
    make_imagenet30(tmp_path, train="train", test="test")
    data = imagenet30.load(tmp_path)
    assert data.train_x.shape == (6, 3, 224, 224)


def test_imagenet30_grayscale_becomes_rgb(tmp_path):
    make_imagenet30(tmp_path)
    Image.new("L", (20, 20), 128).save(tmp_path / "one_class_test" / "banjo" / "gray.JPEG", format="JPEG")
    data = imagenet30.load(tmp_path, image_size=8)
    assert data.test_x.shape == (4, 3, 8, 8)


def test_imagenet30_missing(tmp_path):
    problems = imagenet30.check(tmp_path)
    assert any("one_class_train" in p for p in problems)
    missing = tmp_path / "nowhere"
    assert imagenet30.check(missing)
    with pytest.raises(DatasetNotFoundError, match="nowhere.one_class_train"):
        imagenet30.load(missing)
    with pytest.raises(DatasetNotFoundError):
        imagenet30.class_names(missing)


def test_imagenet30_class_mismatch_and_empty_class(tmp_path):
    make_imagenet30(tmp_path)
    _jpeg(tmp_path / "one_class_test" / "dumbbell" / "x.JPEG", (9, 9, 9), (10, 10))
    with pytest.raises(DataError, match="only in .*one_class_test.*: dumbbell"):
        imagenet30.load(tmp_path, image_size=8)
    assert "dumbbell" in imagenet30.check(tmp_path)[0]
    (tmp_path / "one_class_test" / "dumbbell" / "x.JPEG").unlink()
    (tmp_path / "one_class_test" / "dumbbell").rmdir()
    for p in (tmp_path / "one_class_train" / "banjo").iterdir():
        p.unlink()
    assert "banjo" in imagenet30.check(tmp_path)[0]
    with pytest.raises(DataError, match="banjo"):
        imagenet30.load(tmp_path, image_size=8)


def test_imagenet30_corrupt_image(tmp_path):
    make_imagenet30(tmp_path)
    bad = tmp_path / "one_class_test" / "cannon" / "cannon" / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    with pytest.raises(DataError, match="broken.JPEG"):
        imagenet30.load(tmp_path, image_size=8)
