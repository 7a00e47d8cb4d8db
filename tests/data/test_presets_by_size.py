"""The preset and the default method follow the images' size, whatever their layout."""

import numpy as np
import pytest
from PIL import Image

from robustad.data.registry import LOW_RES_SIDE, preset_for, probe_image_side
from robustad.methods.catalog import default_method


def _png(path, side):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((side, side), np.uint8)).save(path)


@pytest.mark.parametrize("side,preset", [(25, "cpu-small"), (32, "cpu-small"), (48, "cpu-highres"), (256, "cpu-highres")])
def test_folder_and_mvtec_layouts_choose_by_size(tmp_path, side, preset):
    _png(tmp_path / "good" / "a.png", side)
    _png(tmp_path / "mv" / "bottle" / "train" / "good" / "a.png", side)
    folder_side = probe_image_side("folder", normal_dir=tmp_path / "good")
    mvtec_side = probe_image_side("mvtec", root=tmp_path / "mv", category="bottle")
    assert folder_side == mvtec_side == side
    assert preset_for("folder", "cpu", folder_side) == preset
    expected_mvtec = "mvtec-cpu" if side > LOW_RES_SIDE else preset  # mvtec-cpu is cpu-highres under its own name
    assert preset_for("mvtec", "cpu", mvtec_side) == expected_mvtec


def test_known_data_sets_keep_their_presets_and_sizes():
    assert probe_image_side("mnist") == 28 and preset_for("mnist", "cpu", 28) == "mnist-cpu"
    assert probe_image_side("textures") == 64 and preset_for("textures", "cpu", 64) == "textures-cpu"
    assert probe_image_side("visa", root="/nowhere", category="candle") is None
    assert probe_image_side("folder", normal_dir="/nowhere") is None


def test_default_method_by_size():
    assert default_method(28) == "cobra-ensemble" and default_method(LOW_RES_SIDE) == "cobra-ensemble"
    assert default_method(64) == "cobra-patch" and default_method(None) == "cobra-patch"
