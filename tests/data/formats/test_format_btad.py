"""BTAD loader on tiny fixtures in BTAD's on-disk layout (bitmap images; bitmap or PNG masks)."""

import numpy as np
import pytest
from PIL import Image

from robustad.data.formats import btad
from robustad.data.registry import dataset_info, load_dataset
from robustad.errors import DataError

SIDE = 12


def _save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def root(tmp_path):
    """Product 01 with bitmap masks, product 03 with PNG masks; a stray folder that is no product."""
    rng = np.random.default_rng(0)
    for product, mask_ext in (("01", "bmp"), ("03", "png")):
        for i in range(4):
            _save(tmp_path / product / "train" / "ok" / f"{i:04d}.bmp", rng.integers(0, 256, (SIDE, SIDE, 3), np.uint8))
        for i in range(2):
            _save(tmp_path / product / "test" / "ok" / f"{i:04d}.bmp", rng.integers(0, 256, (SIDE, SIDE, 3), np.uint8))
            _save(tmp_path / product / "test" / "ko" / f"{i:04d}.bmp", rng.integers(0, 256, (SIDE, SIDE, 3), np.uint8))
            mask = np.zeros((SIDE, SIDE), np.uint8)
            mask[2 + i : 6 + i, 3:7] = 255
            _save(tmp_path / product / "ground_truth" / "ko" / f"{i:04d}.{mask_ext}", mask)
    (tmp_path / "docs").mkdir()
    return tmp_path


def test_products_load_with_masks_matched_by_stem_whatever_their_type(root):
    assert btad.categories(root) == ["01", "03"] and btad.check(root) == []
    for product in ("01", "03"):
        split = btad.load(root, product)
        assert split.name == "btad" and split.category == product
        assert split.train.shape == (4, 3, SIDE, SIDE) and split.test.shape == (4, 3, SIDE, SIDE)
        assert sorted(split.test_labels.tolist()) == [0, 0, 1, 1]
        for label, mask in zip(split.test_labels, split.test_masks):
            assert mask.sum() == (16 if label == 1 else 0)  # the 4x4 white square, or nothing for a good image


def test_the_alias_and_the_registry_find_it(root):
    assert dataset_info("beantech") is dataset_info("btad")
    split = load_dataset("btad", root=root, category="03", max_train=2, max_test=2, seed=0)
    assert split.train.shape[0] == 2 and split.test_labels.tolist().count(1) == 1


def test_a_defective_image_without_a_mask_is_named(root):
    (root / "01" / "ground_truth" / "ko" / "0001.bmp").unlink()
    assert any("0001.bmp" in p and "no mask" in p for p in btad.check(root))
    with pytest.raises(DataError, match="BTAD 01: .*no mask.*0001.bmp"):
        btad.load(root, "01")


def test_an_unknown_product_and_a_missing_root_are_refused(root, tmp_path):
    with pytest.raises(DataError, match="02"):
        btad.load(root, "02")
    with pytest.raises(DataError):
        btad.load(tmp_path / "nowhere", "01")
