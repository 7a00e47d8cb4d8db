"""VisA loader on a tiny fixture with a split_csv/1cls.csv written like the real one."""

import re

import numpy as np
import pytest
from PIL import Image

from robustad.data.formats import visa
from robustad.errors import DataError, DatasetNotFoundError

H, W = 20, 24
HEADER = "object,split,label,image,mask\n"


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def _mask(path, hw=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros(hw, dtype=np.uint8)
    pixels[2:6, 3:8] = 255
    Image.fromarray(pixels).save(path)


def _rows(obj):
    rows = [f"{obj},train,normal,{obj}/Data/Images/Normal/{i:04d}.JPG," for i in range(3)]
    rows += [f"{obj},test,normal,{obj}/Data/Images/Normal/{i:04d}.JPG," for i in range(3, 5)]
    rows += [f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/{i:03d}.JPG,{obj}/Data/Masks/Anomaly/{i:03d}.png"
             for i in range(2)]
    return rows


@pytest.fixture
def root(tmp_path):
    """candle and pcb1: 3 training images, 2 normal and 2 anomalous test images (with masks)."""
    base = tmp_path / "VisA_20220922"
    for k, obj in enumerate(("pcb1", "candle")):
        for i in range(5):
            _image(base / obj / "Data" / "Images" / "Normal" / f"{i:04d}.JPG", 10 * k + i)
        for i in range(2):
            _image(base / obj / "Data" / "Images" / "Anomaly" / f"{i:03d}.JPG", 100 + 10 * k + i)
            _mask(base / obj / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png")
    _write_csv(base, _rows("candle") + _rows("pcb1"))
    return base


def _write_csv(base, rows):
    (base / "split_csv").mkdir(parents=True, exist_ok=True)
    (base / "split_csv" / "1cls.csv").write_text(HEADER + "\n".join(rows) + "\n")


def test_load_shapes_labels_masks(root):
    split = visa.load(root, "candle")
    assert split.name == "visa" and split.category == "candle"
    assert split.train.shape == (3, 3, H, W) and split.test.shape == (4, 3, H, W)
    assert split.test_labels.tolist() == [0, 0, 1, 1]
    assert split.test_masks.shape == (4, 1, H, W)
    assert split.test_masks[:2].sum() == 0
    assert split.test_masks[2:, 0, 2:6, 3:8].eq(1).all() and split.test_masks[2:].sum() == 2 * 4 * 5
    assert all("/candle/" in p for p in split.test_paths)


def test_image_size_and_subsampling(root):
    split = visa.load(root, "pcb1", image_size=16)
    assert split.train.shape == (3, 3, 16, 16) and split.test_masks.shape == (4, 1, 16, 16)
    assert split.test_masks[2:].flatten(1).amax(1).eq(1).all() and split.test_masks[:2].sum() == 0
    small = visa.load(root, "pcb1", max_train=1, max_test=2)
    assert small.train.shape[0] == 1 and sorted(small.test_labels.tolist()) == [0, 1]


def test_categories_and_check(root, tmp_path):
    assert visa.categories(root) == ["candle", "pcb1"]
    assert visa.check(root) == []
    (root / "pcb1" / "Data" / "Masks" / "Anomaly" / "001.png").unlink()
    problems = visa.check(root)
    assert len(problems) == 1 and problems[0].startswith("pcb1:") and "001.png" in problems[0]
    assert visa.categories(tmp_path) == []
    assert "split_csv/1cls.csv" in visa.check(tmp_path)[0]
    assert "does not exist" in visa.check(tmp_path / "nowhere")[0]


def test_missing_root_and_split_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        visa.load(tmp_path / "nowhere", "candle")
    with pytest.raises(DatasetNotFoundError, match=r"split_csv/1cls\.csv"):
        visa.load(tmp_path, "candle")


def test_unknown_object(root):
    with pytest.raises(DataError, match=r"'fryum'.*objects found: candle, pcb1"):
        visa.load(root, "fryum")


@pytest.mark.parametrize("bad, message", [
    ("candle,val,normal,candle/Data/Images/Normal/0000.JPG,", r"line 4: split 'val'"),
    ("candle,test,defect,candle/Data/Images/Normal/0000.JPG,", r"line 4: label 'defect'"),
    ("candle,test", r"line 4: 2 fields"),
])
def test_bad_row_names_the_line(root, bad, message):
    rows = _rows("candle")
    rows[2] = bad  # CSV line 4 (the header is line 1)
    _write_csv(root, rows)
    with pytest.raises(DataError, match=message):
        visa.load(root, "candle")
    assert any("line 4" in p for p in visa.check(root))


def test_missing_image_or_mask_named(root):
    image = root / "candle" / "Data" / "Images" / "Normal" / "0001.JPG"
    image.unlink()
    with pytest.raises(DataError, match=re.escape(str(image)) + r".*line 3"):
        visa.load(root, "candle")
    mask = root / "pcb1" / "Data" / "Masks" / "Anomaly" / "000.png"
    mask.unlink()
    with pytest.raises(DataError, match=re.escape(str(mask))):
        visa.load(root, "pcb1")


def test_anomaly_without_mask_and_wrong_mask_size(root):
    rows = _rows("candle")
    rows[-1] = rows[-1].rsplit(",", 1)[0] + ","
    _write_csv(root, rows)
    with pytest.raises(DataError, match=r"line 8 .*without a mask"):
        visa.load(root, "candle")
    _write_csv(root, _rows("candle"))
    _mask(root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png", hw=(W, H))
    with pytest.raises(DataError, match=r"001\.png' is 24x20 but its image is 20x24"):
        visa.load(root, "candle")
