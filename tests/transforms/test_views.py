"""Tests for robustad.transforms.views."""

import pytest
import torch
import torch.nn.functional as F

from robustad.errors import ConfigError, InputError
from robustad.transforms import LightViews, ViewConfig


def images(b, c, h, w, seed=0, smooth=True, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    if not smooth:
        return torch.rand(b, c, h, w, generator=g, dtype=dtype)
    low = torch.rand(b, c, max(2, h // 4), max(2, w // 4), generator=g, dtype=dtype)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


IDENTITY = dict(crop_scale=(1.0, 1.0), jitter_p=0.0, grayscale_p=0.0, flip=False)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 40, 64), (3, 224, 224)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_range(shape, dtype):
    x = images(4, *shape, dtype=dtype)
    y = LightViews(ViewConfig(flip=True))(x, gen(0))
    assert y.shape == x.shape and y.dtype == dtype
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("c", [1, 3])
def test_per_sample_randomness(c):
    x = images(1, c, 32, 32).expand(8, -1, -1, -1).contiguous()
    y = LightViews(ViewConfig())(x, gen(0))
    distinct = {tuple(y[i].flatten()[::7].tolist()) for i in range(8)}
    assert len(distinct) == 8


def test_seeded_determinism():
    x = images(6, 3, 32, 32)
    v = LightViews(ViewConfig(flip=True))
    a, b, c = v(x, gen(1)), v(x, gen(1)), v(x, gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("c", [1, 3])
def test_differentiable(c):
    x = images(6, c, 32, 32).requires_grad_(True)
    LightViews(ViewConfig(flip=True, jitter_p=1.0, grayscale_p=0.5))(x, gen(0)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradient_finite_on_flat_and_black_images():
    # Hue/saturation maths divide by colour spread; flat images must not give NaNs.
    x = torch.cat([torch.zeros(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.5), torch.ones(2, 3, 16, 16)])
    x.requires_grad_(True)
    LightViews(ViewConfig(jitter_p=1.0))(x, gen(0)).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("c", [1, 3])
def test_changes_the_image(c):
    x = images(16, c, 32, 32)
    y = LightViews(ViewConfig())(x, gen(0))
    assert (y - x).abs().mean(dim=(1, 2, 3)).min() > 0.005


def test_identity_config_is_identity():
    x = images(8, 3, 32, 40, smooth=False)
    y = LightViews(ViewConfig(**IDENTITY))(x, gen(0))
    assert torch.allclose(y, x, atol=1e-5)


def test_crop_zooms_in():
    x = images(16, 1, 32, 32, smooth=False)
    y = LightViews(ViewConfig(crop_scale=(0.3, 0.5), jitter_p=0.0, grayscale_p=0.0))(x, gen(0))
    # Upsampling a crop smooths noise: neighbouring pixels become correlated.
    dx = (y[..., 1:] - y[..., :-1]).abs().mean()
    assert dx < 0.8 * (x[..., 1:] - x[..., :-1]).abs().mean()


def test_flip_mirrors_some_images():
    x = images(32, 3, 16, 16, smooth=False)
    cfg = dict(IDENTITY, flip=True)
    y = LightViews(ViewConfig(**cfg))(x, gen(0))
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert (same | mirrored).all()
    assert same.any() and mirrored.any()


def test_grayscale():
    x = images(8, 3, 16, 16, smooth=False)
    y = LightViews(ViewConfig(crop_scale=(1.0, 1.0), jitter_p=0.0, grayscale_p=1.0))(x, gen(0))
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])
    # Greyscale on one channel is a no-op.
    x1 = images(8, 1, 16, 16)
    y1 = LightViews(ViewConfig(crop_scale=(1.0, 1.0), jitter_p=0.0, grayscale_p=1.0))(x1, gen(0))
    assert torch.allclose(y1, x1, atol=1e-5)


def test_jitter_probability():
    x = images(200, 3, 8, 8)
    cfg = dict(IDENTITY, jitter_p=0.5)
    y = LightViews(ViewConfig(**cfg))(x, gen(0))
    jittered = ~torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    assert 60 < jittered.sum() < 140


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(crop_scale=(0.0, 1.0)),
        dict(crop_scale=(0.8, 0.5)),
        dict(crop_scale=(0.5, 1.5)),
        dict(crop_scale=0.5),
        dict(jitter_strength=-0.1),
        dict(jitter_p=1.5),
        dict(grayscale_p=-0.1),
        dict(flip="yes"),
    ],
)
def test_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ViewConfig(**kwargs)


def test_config_accepts_list_scale():
    assert ViewConfig(crop_scale=[0.5, 1]).crop_scale == (0.5, 1.0)


def test_bad_inputs_raise():
    v = LightViews(ViewConfig())
    for bad in (torch.rand(3, 32, 32), torch.rand(2, 4, 32, 32), torch.zeros(2, 3, 8, 8, dtype=torch.uint8)):
        with pytest.raises(InputError):
            v(bad, gen(0))


def test_large_batch_runs():
    x = torch.rand(256, 3, 32, 32)
    assert LightViews(ViewConfig(flip=True))(x, gen(0)).shape == x.shape


def test_rotate_hue():
    import math

    import kornia

    from robustad.transforms._common import rotate_hue

    x = torch.rand(512, 3, 1, 1) * 0.6 + 0.2
    zero, full = torch.zeros(512), torch.ones(512)
    assert torch.allclose(rotate_hue(x, zero), x, atol=1e-6)
    assert torch.allclose(rotate_hue(x, full), x, atol=1e-5)
    # Luma is kept for colours that need no clamping.
    small = torch.full((512,), 0.03)
    y = rotate_hue(x, small)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    ok = ((y > 0) & (y < 1)).all(1).flatten()
    assert torch.allclose((y * luma).sum(1).flatten()[ok], (x * luma).sum(1).flatten()[ok], atol=1e-5)
    # Same direction as the HSV hue shift.
    h = kornia.enhance.adjust_hue(x, small * 2 * math.pi)
    cos = F.cosine_similarity((y - x).flatten(1), (h - x).flatten(1)).mean()
    assert cos > 0.5
