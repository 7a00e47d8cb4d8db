"""Cityscapes-style ID/OOD folders, with images nested in per-city subfolders."""

import re

import numpy as np
import pytest
from PIL import Image

from robustad.data.formats import cityscapes
from robustad.errors import DataError, DatasetNotFoundError

H, W = 20, 24


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def root(tmp_path):
    """train/ID: 2 aachen + 2 bochum; test/ID: 2 frankfurt; test/OOD: 3 (one nested)."""
    base = tmp_path / "cityscapes-ood"
    for i, city in enumerate(["bochum", "aachen"]):
        for j in range(2):
            _image(base / "train" / "ID" / city / f"{city}_{j:06d}_000019_leftImg8bit.png", 10 * i + j)
    for j in range(2):
        _image(base / "test" / "ID" / "frankfurt" / f"frankfurt_{j:06d}_000294_leftImg8bit.png", 100 + j)
    _image(base / "test" / "OOD" / "b.png", 200)
    _image(base / "test" / "OOD" / "a.jpg", 201)
    _image(base / "test" / "OOD" / "lostandfound" / "c.png", 202)
    (base / "test" / "OOD" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata, not an image
    (base / "README.txt").write_text("ID/OOD split")
    return base


def test_load_recursive_sorted_labels(root):
    split = cityscapes.load(root, None)
    assert split.name == "cityscapes" and split.category == "cityscapes"
    assert split.train.shape == (4, 3, H, W) and split.test.shape == (5, 3, H, W)
    assert split.test_labels.tolist() == [0, 0, 1, 1, 1]
    assert split.test_masks is None
    assert [p.split("OOD/")[-1] for p in split.test_paths[2:]] == ["a.jpg", "b.png", "lostandfound/c.png"]
    assert cityscapes.load(root, "cityscapes").test_paths == split.test_paths


def test_image_size_and_subsampling(root):
    split = cityscapes.load(root, image_size=16)
    assert split.train.shape == (4, 3, 16, 16) and split.test.shape == (5, 3, 16, 16)
    small = cityscapes.load(root, max_train=3, max_test=4)
    assert small.train.shape[0] == 3 and small.test_labels.tolist() == [0, 0, 1, 1]


def test_categories_and_check(root, tmp_path):
    assert cityscapes.categories(root) == ["cityscapes"]
    assert cityscapes.check(root) == []
    for f in (root / "test" / "ID" / "frankfurt").iterdir():
        f.unlink()
    (root / "test" / "OOD").rename(root / "test" / "ood-images")
    problems = cityscapes.check(root)
    assert len(problems) == 2 and "test/ID" in problems[0] and "no images" in problems[0]
    assert "test/OOD" in problems[1] and "missing" in problems[1]
    assert cityscapes.categories(root) == []
    assert "does not exist" in cityscapes.check(tmp_path / "nowhere")[0]


def test_errors(root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "nowhere")) + r"(.|\n)*test/OOD"):
        cityscapes.load(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no category 'aachen'.*'cityscapes'"):
        cityscapes.load(root, "aachen")
    (root / "test" / "OOD").rename(root / "test" / "ood-images")
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(root / "test" / "OOD"))):
        cityscapes.load(root)
    (root / "test" / "ood-images").rename(root / "test" / "OOD")
    for f in (root / "train" / "ID").rglob("*.png"):
        f.unlink()
    with pytest.raises(DataError, match=r"no images under '.*train/ID'"):
        cityscapes.load(root)
