"""DAGM 2007 loader on a tiny fixture with Labels.txt files written like the real ones."""

import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from robustad.data.folder import read_image
from robustad.data.formats import dagm
from robustad.errors import DataError, DatasetNotFoundError

H, W = 20, 24


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(H, W), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


def _ellipse(path, hw=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.new("L", (hw[1], hw[0]), 0)
    ImageDraw.Draw(mask).ellipse((4, 3, 15, 10), fill=255)
    mask.save(path)


def _split(folder, flags, seed, newline="\n"):
    """Images 0001.PNG.. with the given defect flags, their Labels.txt and masks."""
    lines = ["1"]
    for i, flag in enumerate(flags, start=1):
        name = f"{i:04d}.PNG"
        _image(folder / name, seed + i)
        if flag:
            _ellipse(folder / "Label" / f"{i:04d}_label.PNG")
            lines.append(f"{i}\t1\t{name}\t0\t{i:04d}_label.PNG")
        else:
            lines.append(f"{i}\t0\t{name}\t0\t")
    (folder / "Label").mkdir(parents=True, exist_ok=True)
    (folder / "Label" / "Labels.txt").write_bytes((newline.join(lines) + newline).encode())


@pytest.fixture
def root(tmp_path):
    """Class1 and Class10: Train 0 0 1 0 (one defective, dropped), Test 0 1 0 1."""
    base = tmp_path / "DAGM"
    for k, cls in enumerate(("Class10", "Class1")):
        _split(base / cls / "Train", [0, 0, 1, 0], 100 * k, newline="\r\n" if k else "\n")
        _split(base / cls / "Test", [0, 1, 0, 1], 100 * k + 50)
    (base / "Class1_def").mkdir()  # the defect-only folders of the original download are not classes
    return base


def test_read_labels_parses_the_real_format(tmp_path):
    path = tmp_path / "Labels.txt"
    path.write_text("1\n1\t0\t0001.PNG\t0\t\n2\t1\t0002.PNG\t0\t0002_label.PNG\n\n")
    labels = dagm.read_labels(path)
    assert [(lab.line, lab.defect, lab.image, lab.mask) for lab in labels] == [
        (2, 0, "0001.PNG", None), (3, 1, "0002.PNG", "0002_label.PNG")]


def test_load_shapes_labels_masks(root):
    split = dagm.load(root, "Class1")
    assert split.name == "dagm" and split.category == "Class1"
    assert split.train.shape == (3, 1, H, W)  # the defective training image is dropped
    kept = torch.stack([read_image(root / "Class1" / "Train" / f"000{i}.PNG") for i in (1, 2, 4)])
    assert torch.equal(split.train, kept)
    assert split.test.shape == (4, 1, H, W) and split.test_labels.tolist() == [0, 1, 0, 1]
    assert split.test_masks.shape == (4, 1, H, W)
    assert split.test_masks[[0, 2]].sum() == 0
    assert split.test_masks[[1, 3]].flatten(1).sum(1).gt(20).all()
    assert set(split.test_masks.unique().tolist()) == {0.0, 1.0}


def test_image_size_and_subsampling(root):
    split = dagm.load(root, "Class10", image_size=16, channels=3)
    assert split.train.shape == (3, 3, 16, 16) and split.test.shape == (4, 3, 16, 16)
    assert split.test_masks.shape == (4, 1, 16, 16) and split.test_masks[[1, 3]].flatten(1).amax(1).eq(1).all()
    small = dagm.load(root, "Class10", max_train=2, max_test=2)
    assert small.train.shape[0] == 2 and sorted(small.test_labels.tolist()) == [0, 1]


def test_categories_and_check(root, tmp_path):
    assert dagm.categories(root) == ["Class1", "Class10"]
    assert dagm.check(root) == []
    (root / "Class10" / "Test" / "Label" / "Labels.txt").unlink()
    (root / "Class1" / "Train" / "0002.PNG").unlink()
    problems = dagm.check(root)
    assert len(problems) == 2
    assert "Class1" in problems[0] and "0002.PNG" in problems[0]
    assert "Class10" in problems[1] and "Test/Label/Labels.txt" in problems[1]
    assert "does not exist" in dagm.check(tmp_path / "nowhere")[0]
    assert "no Class<N> folders" in dagm.check(tmp_path)[0]


def test_missing_root_and_unknown_class(root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "nowhere")) + r"(.|\n)*Labels\.txt"):
        dagm.load(tmp_path / "nowhere", "Class1")
    with pytest.raises(DataError, match=r"'Class7'.*classes found: Class1, Class10"):
        dagm.load(root, "Class7")


def test_malformed_line_names_file_and_line(root):
    labels = root / "Class1" / "Test" / "Label" / "Labels.txt"
    labels.write_text("1\n1\t0\t0001.PNG\t0\t\n2\t2\t0002.PNG\t0\t0002_label.PNG\n")
    with pytest.raises(DataError, match=re.escape(str(labels)) + r"' line 3"):
        dagm.load(root, "Class1")
    labels.write_text("1\n1\t0\t0001.PNG\t0\t\n2\t1\t0002.PNG\t0\t\n")
    with pytest.raises(DataError, match=r"line 3: image 0002\.PNG is flagged defective but names no mask"):
        dagm.load(root, "Class1")


def test_missing_files_are_named(root):
    labels = root / "Class1" / "Train" / "Label" / "Labels.txt"
    labels.unlink()
    with pytest.raises(DataError, match=re.escape(str(labels))):
        dagm.load(root, "Class1")
    mask = root / "Class10" / "Test" / "Label" / "0004_label.PNG"
    mask.unlink()
    with pytest.raises(DataError, match=re.escape(str(mask)) + r".*line 5"):
        dagm.load(root, "Class10")
    image = root / "Class10" / "Test" / "0001.PNG"
    image.unlink()
    with pytest.raises(DataError, match=re.escape(str(image))):
        dagm.load(root, "Class10")


def test_mask_of_the_wrong_size(root):
    _ellipse(root / "Class1" / "Test" / "Label" / "0002_label.PNG", hw=(W, H))
    with pytest.raises(DataError, match=r"0002_label\.PNG' is 24x20 but its image is 20x24"):
        dagm.load(root, "Class1")
