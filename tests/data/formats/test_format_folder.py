"""The generic folder format (as anomalib's Folder): normal, abnormal, normal-test and mask folders."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from robustad.data.formats import folder
from robustad.errors import DataError, DatasetNotFoundError

H, W = 20, 24


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _mask(path, hw=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros(hw, dtype=np.uint8)
    pixels[5:9, 5:11] = 255
    Image.fromarray(pixels).save(path)


@pytest.fixture
def root(tmp_path):
    """good: 5; good_test: 2; scratch: 2 and dent: 1 abnormal; masks: <stem>.png and <stem>_mask.png."""
    base = tmp_path / "parts"
    for i in range(5):
        _image(base / "good" / f"g{i}.png", i)
    for i in range(2):
        _image(base / "good_test" / f"t{i}.png", 10 + i)
        _image(base / "scratch" / f"s{i}.jpg", 20 + i)
    _image(base / "dent" / "d0.bmp", 30)
    _image(base / "good" / "nested" / "not_listed.png", 40)  # folders are not searched recursively
    _mask(base / "masks" / "s0.png")
    _mask(base / "masks" / "s1_mask.png")
    _mask(base / "masks" / "d0_mask.png")
    return base


def test_load_with_test_dir_and_masks(root):
    split = folder.load(root, normal_dir="good", abnormal_dirs=["scratch", "dent"],
                        normal_test_dir="good_test", mask_dir="masks")
    assert split.name == "folder" and split.category == "good"
    assert split.train.shape == (5, 3, H, W) and split.test.shape == (5, 3, H, W)
    assert split.test_labels.tolist() == [0, 0, 1, 1, 1]
    assert [p.rsplit("/", 1)[-1] for p in split.test_paths] == ["t0.png", "t1.png", "s0.jpg", "s1.jpg", "d0.bmp"]
    assert split.test_masks.shape == (5, 1, H, W)
    assert split.test_masks[:2].sum() == 0 and split.test_masks[2:].flatten(1).sum(1).eq(4 * 6).all()


def test_without_masks_and_absolute_folders(root):
    split = folder.load(None, "parts", normal_dir=root / "good", abnormal_dirs=str(root / "dent"),
                        normal_test_dir=root / "good_test")
    assert split.category == "parts" and split.test_masks is None
    assert split.test_labels.tolist() == [0, 0, 1]


def test_seeded_holdout_of_normal_images(root):
    split = folder.load(root, normal_dir="good", abnormal_dirs=["scratch"], seed=5)
    assert split.train.shape[0] == 4 and split.test_labels.tolist() == [0, 1, 1]
    assert not any(torch.equal(split.test[0], x) for x in split.train)  # held out, never trained on
    assert folder.load(root, normal_dir="good", abnormal_dirs=["scratch"], seed=5).test_paths == split.test_paths
    wider = folder.load(root, normal_dir="good", abnormal_dirs=["scratch"], normal_split_ratio=0.4)
    assert wider.train.shape[0] == 3 and wider.test_labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(DataError, match=r"normal_split_ratio must be between 0 and 1.*1\.5"):
        folder.load(root, normal_dir="good", abnormal_dirs=["scratch"], normal_split_ratio=1.5)


def test_image_size_and_subsampling(root):
    split = folder.load(root, normal_dir="good", abnormal_dirs=["scratch", "dent"],
                        normal_test_dir="good_test", mask_dir="masks", image_size=16)
    assert split.train.shape == (5, 3, 16, 16) and split.test.shape == (5, 3, 16, 16)
    assert split.test_masks.shape == (5, 1, 16, 16) and split.test_masks[2:].flatten(1).amax(1).eq(1).all()
    small = folder.load(root, normal_dir="good", abnormal_dirs=["scratch", "dent"],
                        normal_test_dir="good_test", max_train=2, max_test=3)
    assert small.train.shape[0] == 2 and small.test_labels.tolist().count(0) == 1 and len(small.test) == 3


def test_categories_and_check(root, tmp_path):
    assert folder.categories(root) == []
    assert folder.check(root) == [] and folder.check(None) == []
    problems = folder.check(tmp_path / "nowhere")
    assert len(problems) == 1 and "nowhere" in problems[0] and "does not exist" in problems[0]


def test_missing_mask_names_the_image(root):
    (root / "masks" / "d0_mask.png").unlink()
    with pytest.raises(DataError, match=re.escape(str(root / "dent" / "d0.bmp")) + r".*d0\.png.*d0_mask\.png"):
        folder.load(root, normal_dir="good", abnormal_dirs=["scratch", "dent"], mask_dir="masks")


def test_mask_of_the_wrong_size(root):
    _mask(root / "masks" / "s0.png", hw=(8, 8))
    with pytest.raises(DataError, match=r"s0\.png' is 8x8 but its image is 20x24"):
        folder.load(root, normal_dir="good", abnormal_dirs=["scratch"], mask_dir="masks")


def test_bad_arguments_and_folders(root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        folder.load(tmp_path / "nowhere", normal_dir="good", abnormal_dirs=["scratch"])
    with pytest.raises(DataError, match=r"normal_dir"):
        folder.load(root, abnormal_dirs=["scratch"])
    with pytest.raises(DataError, match=r"abnormal_dirs"):
        folder.load(root, normal_dir="good", abnormal_dirs=[])
    with pytest.raises(DataError, match=r"normal folder '.*goood' does not exist"):
        folder.load(root, normal_dir="goood", abnormal_dirs=["scratch"])
    with pytest.raises(DataError, match=r"abnormal folder '.*crack' does not exist"):
        folder.load(root, normal_dir="good", abnormal_dirs=["scratch", "crack"])
    with pytest.raises(DataError, match=r"mask folder '.*gt' does not exist"):
        folder.load(root, normal_dir="good", abnormal_dirs=["scratch"], mask_dir="gt")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images in abnormal folder '.*empty'"):
        folder.load(root, normal_dir="good", abnormal_dirs=["empty"])
    with pytest.raises(DataError, match=r"both the normal and an abnormal folder"):
        folder.load(root, normal_dir="good", abnormal_dirs=["good"])
    with pytest.raises(DataError, match=r"normal_test_dir '.*good' is the training folder"):
        folder.load(root, normal_dir="good", abnormal_dirs=["scratch"], normal_test_dir="good")
