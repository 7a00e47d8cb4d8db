"""ISIC 2018 task 3 loader on a tiny fixture in the challenge's folder and CSV layout."""

import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from robustad.data.formats import isic
from robustad.errors import DataError, DatasetNotFoundError

H, W = 20, 24
HEADER = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
COLUMNS = HEADER.split(",")[1:]


def _split(root, split, diagnoses, first):
    """Images ISIC_<first>.. with the given diagnoses, and the split's ground-truth CSV."""
    folder = root / f"ISIC2018_Task3_{split}_Input"
    folder.mkdir(parents=True)
    (folder / "LICENSE.txt").write_text("CC-BY-NC")
    lines = [HEADER]
    for i, diagnosis in enumerate(diagnoses):
        name = f"ISIC_{first + i:07d}"
        pixels = np.random.default_rng(first + i).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.jpg", quality=95)
        lines.append(",".join([name] + ["1.0" if c == diagnosis else "0.0" for c in COLUMNS]))
    table = root / f"ISIC2018_Task3_{split}_GroundTruth" / f"ISIC2018_Task3_{split}_GroundTruth.csv"
    table.parent.mkdir()
    table.write_text("\n".join(lines) + "\n")
    return table


TRAINING = ["NV", "MEL", "NV", "BKL", "NV", "NV", "MEL", "BKL", "NV", "MEL"]  # 5 NV, 3 MEL, 2 BKL


@pytest.fixture
def root(tmp_path):
    base = tmp_path / "isic2018"
    _split(base, "Training", TRAINING, 24306)
    _split(base, "Test", ["NV", "MEL", "NV", "VASC"], 34321)
    return base


def test_load_with_test_split(root):
    split = isic.load(root, "NV")
    assert split.name == "isic" and split.category == "NV"
    assert split.train.shape == (5, 3, H, W) and split.test.shape == (4, 3, H, W)
    assert split.test_labels.tolist() == [0, 1, 0, 1]
    assert split.test_masks is None
    assert all("ISIC2018_Task3_Test_Input" in p for p in split.test_paths)
    assert isic.load(root, "mel").test_labels.tolist() == [1, 0, 1, 1]  # case-insensitive; MEL normal


def test_validation_split_is_the_fallback(root):
    shutil.rmtree(root / "ISIC2018_Task3_Test_GroundTruth")
    _split(root, "Validation", ["MEL", "NV", "NV"], 34000)
    split = isic.load(root, "NV")
    assert split.test_labels.tolist() == [1, 0, 0]
    assert all("ISIC2018_Task3_Validation_Input" in p for p in split.test_paths)


def test_holdout_without_a_test_split(root):
    shutil.rmtree(root / "ISIC2018_Task3_Test_GroundTruth")
    split = isic.load(root, "NV", seed=3)
    # 20% of each diagnosis, at least one: 1 of 5 NV, 1 of 3 MEL, 1 of 2 BKL
    assert split.train.shape[0] == 4 and split.test_labels.tolist().count(0) == 1
    assert split.test_labels.sum() == 2
    assert all("Training_Input" in p for p in split.test_paths)
    assert not any(torch.equal(t, x) for t in split.test for x in split.train)  # held-out images are not trained on
    again = isic.load(root, "NV", seed=3)
    assert again.test_paths == split.test_paths


def test_image_size_and_subsampling(root):
    split = isic.load(root, "NV", image_size=16)
    assert split.train.shape == (5, 3, 16, 16) and split.test.shape == (4, 3, 16, 16)
    small = isic.load(root, "NV", max_train=3, max_test=2)
    assert small.train.shape[0] == 3 and sorted(small.test_labels.tolist()) == [0, 1]


def test_categories_and_check(root, tmp_path):
    assert isic.categories(root) == sorted(COLUMNS)
    assert isic.check(root) == []
    (root / "ISIC2018_Task3_Test_Input" / "ISIC_0034322.jpg").unlink()
    problems = isic.check(root)
    assert len(problems) == 1 and "ISIC_0034322.jpg" in problems[0]
    assert isic.categories(tmp_path) == []
    problems = isic.check(tmp_path)
    assert any("ISIC2018_Task3_Training_Input" in p for p in problems)
    assert any("ISIC2018_Task3_Training_GroundTruth.csv" in p for p in problems)
    assert "does not exist" in isic.check(tmp_path / "nowhere")[0]


def test_missing_root_and_csv(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        isic.load(tmp_path / "nowhere", "NV")
    with pytest.raises(DatasetNotFoundError, match=r"ISIC2018_Task3_Training_GroundTruth\.csv"):
        isic.load(tmp_path, "NV")


def test_unknown_or_missing_diagnosis(root):
    with pytest.raises(DataError, match=r"'SCC'.*AKIEC, BCC, BKL, DF, MEL, NV, VASC"):
        isic.load(root, "SCC")
    with pytest.raises(DataError, match=r"name the normal diagnosis.*NV"):
        isic.load(root, None)


def test_row_that_is_not_one_hot_names_the_line(root):
    table = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = table.read_text().splitlines()
    lines[3] = lines[3].replace("0.0", "1.0", 1)  # two diagnoses on CSV line 4
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(str(table)) + r"' line 4: ISIC_0024308,.*not one-hot"):
        isic.load(root, "NV")
    lines[3] = lines[3].replace("1.0", "x", 1)
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 4: .*'x'"):
        isic.load(root, "NV")


def test_missing_image_is_named(root):
    image = root / "ISIC2018_Task3_Training_Input" / "ISIC_0024310.jpg"
    image.unlink()
    with pytest.raises(DataError, match=re.escape(str(image)) + r".*line 6"):
        isic.load(root, "NV")
