"""MVTec AD loader on a tiny fixture written in MVTec's exact on-disk layout."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from robustad.data.formats import mvtec
from robustad.errors import DataError, DatasetNotFoundError

H, W = 20, 24


def _image(path, seed, hw=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _mask(path, hw=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros(hw, dtype=np.uint8)
    pixels[4:12, 6:14] = 255
    Image.fromarray(pixels).save(path)


@pytest.fixture
def root(tmp_path):
    """bottle: 3 training images, 2 good and 2 'broken_large' test images with masks."""
    cat = tmp_path / "mvtec" / "bottle"
    for i in range(3):
        _image(cat / "train" / "good" / f"{i:03d}.png", i)
    for i in range(2):
        _image(cat / "test" / "good" / f"{i:03d}.png", 10 + i)
        _image(cat / "test" / "broken_large" / f"{i:03d}.png", 20 + i)
        _mask(cat / "ground_truth" / "broken_large" / f"{i:03d}_mask.png")
    (tmp_path / "mvtec" / "license.txt").write_text("CC BY-NC-SA 4.0")
    (tmp_path / "mvtec" / "not_a_category").mkdir()
    return tmp_path / "mvtec"


def test_load_shapes_labels_masks(root):
    split = mvtec.load(root, "bottle")
    assert split.name == "mvtec" and split.category == "bottle"
    assert split.train.shape == (3, 3, H, W) and split.test.shape == (4, 3, H, W)
    assert split.test_labels.tolist() == [1, 1, 0, 0]  # test folders in name order: broken_large, good
    assert split.test_masks.shape == (4, 1, H, W)
    for label, mask in zip(split.test_labels, split.test_masks):
        assert (mask.sum() == 8 * 8) if label == 1 else (mask.sum() == 0)
    assert split.test_masks[0, 0, 4:12, 6:14].eq(1).all()
    assert [p.split("/")[-2:] for p in split.test_paths][0] == ["broken_large", "000.png"]


def test_image_size_and_subsampling(root):
    split = mvtec.load(root, "bottle", image_size=16, channels=1)
    assert split.train.shape == (3, 1, 16, 16) and split.test.shape == (4, 1, 16, 16)
    assert split.test_masks.shape == (4, 1, 16, 16)
    assert set(split.test_masks.unique().tolist()) == {0.0, 1.0}
    assert split.test_masks[:2].sum(dim=(1, 2, 3)).gt(0).all() and split.test_masks[2:].sum() == 0
    small = mvtec.load(root, "bottle", max_train=2, max_test=2, seed=1)
    assert small.train.shape[0] == 2 and sorted(small.test_labels.tolist()) == [0, 1]
    again = mvtec.load(root, "bottle", max_train=2, max_test=2, seed=1)
    assert torch.equal(small.train, again.train)


def test_categories_and_check(root, tmp_path):
    assert mvtec.categories(root) == ["bottle"]
    assert mvtec.check(root) == []
    assert mvtec.categories(tmp_path / "nowhere") == []
    (root / "bottle" / "ground_truth" / "broken_large" / "001_mask.png").unlink()
    for f in (root / "bottle" / "test" / "good").iterdir():
        f.unlink()
    problems = "\n".join(mvtec.check(root))
    assert "001_mask.png" in problems and "test/good" in problems


def test_check_missing_root(tmp_path):
    problems = mvtec.check(tmp_path / "nowhere")
    assert len(problems) == 1 and "does not exist" in problems[0] and "train/good" in problems[0]
    assert "no root given" in mvtec.check(None)[0]
    assert "no category folders" in mvtec.check(tmp_path)[0]


def test_missing_root_is_not_found(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(missing)) + r".*\n.*train/good"):
        mvtec.load(missing, "bottle")


def test_unknown_category_lists_the_found_ones(root):
    with pytest.raises(DataError, match=r"'cable'.*categories found: bottle"):
        mvtec.load(root, "cable")
    with pytest.raises(DataError, match=r"name a category"):
        mvtec.load(root, None)


def test_missing_mask_names_the_expected_file(root):
    mask = root / "bottle" / "ground_truth" / "broken_large" / "001_mask.png"
    mask.unlink()
    with pytest.raises(DataError, match=re.escape(str(mask))):
        mvtec.load(root, "bottle")


def test_mask_of_the_wrong_size(root):
    _mask(root / "bottle" / "ground_truth" / "broken_large" / "000_mask.png", hw=(10, 12))
    with pytest.raises(DataError, match=r"000_mask\.png' is 10x12 but its image is 20x24"):
        mvtec.load(root, "bottle")


def test_empty_training_folder(root):
    for f in (root / "bottle" / "train" / "good").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"no images in .*train/good"):
        mvtec.load(root, "bottle")


def test_a_category_without_ground_truth_loads_for_image_level_evaluation(root):
    import shutil

    shutil.rmtree(root / "bottle" / "ground_truth")
    assert mvtec.check(root) == []
    split = mvtec.load(root, "bottle")
    assert sorted(split.test_labels.tolist()) == [0, 0, 1, 1]
    assert split.test_masks is None  # no pixel-level ground truth to report against
