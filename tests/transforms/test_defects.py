"""Synthetic local defects: every shape and fill, masks that mark what changed, seeded draws."""

import pytest
import torch

from robustad.errors import ConfigError
from robustad.transforms.defects import DEFECT_FILLS, DEFECT_SHAPES, SyntheticDefects


def _surface(n=8, c=1, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, c, side, side, generator=g)


@pytest.mark.parametrize("shape", DEFECT_SHAPES)
@pytest.mark.parametrize("fill", DEFECT_FILLS)
def test_each_shape_and_fill_paints_a_visible_defect_inside_its_mask(shape, fill):
    x = _surface(c=3)
    y, mask = SyntheticDefects([shape], [fill])(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and mask.shape == (8, 1, 32, 32)
    assert y.min() >= 0 and y.max() <= 1
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.flatten(1).sum(1) > 0).all()  # each image got a defect it can show
    changed = (y - x).abs().amax(1, keepdim=True) > 2 / 255
    assert changed[mask.bool()].all()  # the mask covers only changed pixels
    # outside the mask and its one-pixel soft edge nothing changes
    halo = torch.nn.functional.max_pool2d(mask, 3, 1, 1).bool()
    assert not changed[~halo].any()


def test_areas_stay_local():
    x = _surface(n=64)
    _, mask = SyntheticDefects()(x, torch.Generator().manual_seed(0))
    assert mask.mean(dim=(1, 2, 3)).max() < 0.2


def test_seeded_draws_repeat_and_differ_between_seeds():
    x = _surface()
    d = SyntheticDefects()
    a = d(x, torch.Generator().manual_seed(3))
    b = d(x, torch.Generator().manual_seed(3))
    c = d(x, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_darkening_black_is_no_defect():
    x = torch.zeros(4, 1, 16, 16)
    y, mask = SyntheticDefects(["rectangle"], ["shade"])(x, torch.Generator().manual_seed(0))
    lighter = (y > 0).flatten(1).any(1)
    assert torch.equal(mask.flatten(1).any(1), lighter)  # only the lightened ones count


@pytest.mark.parametrize("shapes,fills", [(["star"], DEFECT_FILLS), (DEFECT_SHAPES, []), ("blob", DEFECT_FILLS),
                                           (["blob", "blob"], DEFECT_FILLS)])
def test_bad_names_are_refused(shapes, fills):
    with pytest.raises(ConfigError):
        SyntheticDefects(shapes, fills)
