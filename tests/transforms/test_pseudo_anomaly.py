"""Tests for robustad.transforms.pseudo_anomaly."""

import pytest
import torch
import torch.nn.functional as F

from robustad.errors import ConfigError, InputError
from robustad.transforms import (
    PSEUDO_ANOMALY_NAMES,
    PseudoAnomalySet,
    cut_permutation,
    cutout,
    cutpaste_scar,
    elastic,
    rotate90,
)

RANDOM = [cutpaste_scar, cut_permutation, cutout, elastic]
SHAPES = [(1, 28, 28), (3, 32, 32), (3, 40, 64)]


def images(b, c, h, w, seed=0, smooth=True, dtype=torch.float32):
    """Images with some spatial structure (smooth blobs) or per-pixel noise."""
    g = torch.Generator().manual_seed(seed)
    if not smooth:
        return torch.rand(b, c, h, w, generator=g, dtype=dtype)
    low = torch.rand(b, c, max(2, h // 4), max(2, w // 4), generator=g, dtype=dtype)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("fn", RANDOM, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_shape_dtype_range(fn, shape):
    x = images(6, *shape)
    y = fn(x, gen(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("fn", RANDOM, ids=lambda f: f.__name__)
def test_float64_kept(fn):
    x = images(3, 3, 32, 32, dtype=torch.float64)
    y = fn(x, gen(0))
    assert y.dtype == torch.float64 and y.shape == x.shape


@pytest.mark.parametrize("fn", RANDOM, ids=lambda f: f.__name__)
@pytest.mark.parametrize("c", [1, 3])
def test_per_sample_randomness(fn, c):
    x = images(1, c, 32, 32, smooth=False).expand(8, -1, -1, -1).contiguous()
    y = fn(x, gen(0))
    # Identical inputs must not all get the same parameters.
    distinct = {tuple(y[i].flatten()[:: 7].tolist()) for i in range(8)}
    assert len(distinct) >= 6


@pytest.mark.parametrize("fn", RANDOM, ids=lambda f: f.__name__)
def test_seeded_determinism(fn):
    x = images(5, 3, 32, 32)
    a, b, c = fn(x, gen(1)), fn(x, gen(1)), fn(x, gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("fn", RANDOM, ids=lambda f: f.__name__)
@pytest.mark.parametrize("c", [1, 3])
def test_differentiable(fn, c):
    x = images(4, c, 32, 32).requires_grad_(True)
    fn(x, gen(0)).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


# Smallest per-image mean |y - x| we accept on noise images; each is a few
# times below what the transform produces at its weakest settings.
MIN_CHANGE = {"cutpaste_scar": 5e-4, "cut_permutation": 0.1, "cutout": 1e-3, "elastic": 0.05}


@pytest.mark.parametrize("fn", RANDOM, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_changes_every_image(fn, shape):
    x = images(32, *shape, smooth=False)
    y = fn(x, gen(0))
    per_image = (y - x).abs().mean(dim=(1, 2, 3))
    assert per_image.min() > MIN_CHANGE[fn.__name__]


def test_scar_moves_content_on_large_images():
    x = images(8, 3, 224, 224, smooth=False)
    d = (cutpaste_scar(x, gen(0)) - x).abs().amax(1)
    changed = (d > 0.1).float().mean(dim=(1, 2))
    # A strip of at least 2% x 10% of the image, mostly replaced.
    assert changed.min() > 0.001
    assert changed.max() < 0.1  # ...but only a strip


def test_scar_is_local():
    x = images(16, 1, 64, 64, smooth=False)
    changed = ((cutpaste_scar(x, gen(3)) - x).abs() > 1e-6).float().mean(dim=(1, 2, 3))
    assert (changed > 0).all() and (changed < 0.15).all()


def test_cutout_fills_a_constant_rectangle():
    x = images(16, 3, 32, 32, smooth=False)
    y = cutout(x, gen(0))
    changed = (y != x).any(1)  # [B, H, W]
    for i in range(16):
        rows = changed[i].any(1).nonzero().flatten()
        cols = changed[i].any(0).nonzero().flatten()
        hh, ww = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 2 <= hh <= 11 and 2 <= ww <= 11
        patch = y[i, :, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert torch.allclose(patch, patch.flatten()[0].expand_as(patch))


def test_cut_permutation_is_a_roll_and_keeps_pixel_values():
    x = images(16, 3, 28, 28, smooth=False)
    y = cut_permutation(x, gen(0))
    assert torch.equal(x.flatten(1).sort(1).values, y.flatten(1).sort(1).values)
    axes = []
    for i in range(16):
        hits = [(d, s) for d in (1, 2) for s in range(1, 28) if torch.equal(torch.roll(x[i], -s, dims=d), y[i])]
        assert len(hits) == 1
        d, s = hits[0]
        assert 0.2 * 28 - 1 <= s <= 0.8 * 28 + 1
        axes.append(d)
    assert set(axes) == {1, 2}  # both axes get used


def test_elastic_deforms_smoothly_at_224():
    x = images(2, 3, 224, 224)
    y = elastic(x, gen(0))
    assert (y - x).abs().mean() > 0.01


def test_rotate90_exact():
    x = images(4, 3, 32, 32, smooth=False)
    y = x
    for _ in range(4):
        y = rotate90(y, 1)
    assert torch.equal(y, x)
    assert torch.equal(rotate90(x, 2), torch.rot90(x, 2, dims=(2, 3)))
    assert torch.equal(rotate90(x, -1), rotate90(x, 3))
    assert not torch.equal(rotate90(x, 1), x)


def test_rotate90_gradient():
    x = images(2, 1, 28, 28).requires_grad_(True)
    (rotate90(x, 1) * torch.arange(28.0)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_rotate90_non_square_raises():
    with pytest.raises(InputError, match="square"):
        rotate90(torch.rand(2, 3, 32, 40), 1)
    with pytest.raises(InputError):
        PseudoAnomalySet(["rotation"]).expand(torch.rand(2, 1, 28, 30))


@pytest.mark.parametrize(
    "bad",
    [torch.rand(3, 32, 32), torch.rand(2, 2, 32, 32), torch.randint(0, 255, (2, 3, 32, 32)), "image"],
    ids=["3d", "c2", "int", "str"],
)
def test_bad_inputs_raise(bad):
    for fn in RANDOM:
        with pytest.raises(InputError):
            fn(bad, gen(0))
    with pytest.raises(InputError):
        PseudoAnomalySet(["cutout"]).expand(bad)


@pytest.mark.parametrize(
    "names, k, shift_names",
    [
        (["rotation"], 4, ["identity", "rotate90", "rotate180", "rotate270"]),
        (["cutpaste"], 2, ["identity", "cutpaste"]),
        (["cutpaste", "cutout"], 3, ["identity", "cutpaste", "cutout"]),
        (list(PSEUDO_ANOMALY_NAMES), 8,
         ["identity", "rotate90", "rotate180", "rotate270", "cutpaste", "cut_permutation", "cutout", "elastic"]),
    ],
)
def test_set_sizes_and_names(names, k, shift_names):
    s = PseudoAnomalySet(names)
    assert s.num_shifts == k
    assert s.shift_names == shift_names
    assert [s.is_deterministic(i) for i in range(k)] == [n == "identity" or n.startswith("rotate") for n in shift_names]


def test_set_config_errors():
    with pytest.raises(ConfigError) as err:
        PseudoAnomalySet(["rotation", "jigsaw"])
    for name in PSEUDO_ANOMALY_NAMES:
        assert name in str(err.value)
    with pytest.raises(ConfigError):
        PseudoAnomalySet([])
    with pytest.raises(ConfigError):
        PseudoAnomalySet("rotation")
    with pytest.raises(ConfigError):
        PseudoAnomalySet(["cutout", "cutout"])


def test_set_index_errors():
    s = PseudoAnomalySet(["rotation"])
    x = torch.rand(2, 1, 28, 28)
    for k in (-1, 4, 10):
        with pytest.raises(InputError):
            s.apply(x, k)
        with pytest.raises(InputError):
            s.is_deterministic(k)


@pytest.mark.parametrize("c", [1, 3])
def test_expand_layout(c):
    s = PseudoAnomalySet(["rotation", "cutpaste", "elastic"])
    b = 5
    x = images(b, c, 32, 32)
    out, shift_ids, inst_ids = s.expand(x, gen(7))
    k = s.num_shifts
    assert out.shape == (k * b, c, 32, 32) and out.dtype == x.dtype
    assert shift_ids.dtype == torch.long and inst_ids.dtype == torch.long
    assert torch.equal(shift_ids, torch.arange(k).repeat_interleave(b))
    assert torch.equal(inst_ids, torch.arange(b).repeat(k))
    assert torch.equal(out[:b], x)
    for q in (1, 2, 3):
        assert torch.equal(out[q * b : (q + 1) * b], torch.rot90(x, q, dims=(2, 3)))
    # Random blocks come from the same generator in shift order.
    g = gen(7)
    ref = [s.apply(x, q, g) for q in range(k)]
    assert torch.equal(out, torch.cat(ref))
    out2, _, _ = s.expand(x, gen(7))
    assert torch.equal(out, out2)


def test_expand_is_differentiable():
    s = PseudoAnomalySet(list(PSEUDO_ANOMALY_NAMES))
    x = images(3, 3, 32, 32).requires_grad_(True)
    out, _, _ = s.expand(x, gen(0))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_apply_identity_does_not_alias_input():
    x = torch.rand(2, 3, 16, 16)
    y = PseudoAnomalySet(["cutout"]).apply(x, 0)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


def test_global_rng_used_without_generator():
    x = images(4, 3, 32, 32)
    torch.manual_seed(0)
    a = elastic(x)
    torch.manual_seed(0)
    assert torch.equal(a, elastic(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compares CPU and GPU outputs for one CPU generator)")
def test_cpu_generator_with_cuda_input_matches_cpu():
    x = images(4, 3, 32, 32)
    for fn in RANDOM:
        cpu = fn(x, gen(0))
        gpu = fn(x.to("cuda"), gen(0)).cpu()
        assert torch.allclose(cpu, gpu, atol=1e-4)


def test_large_batch_runs():
    # Smoke test of a realistic batch; timings are measured by hand, not asserted.
    x = torch.rand(256, 3, 32, 32)
    s = PseudoAnomalySet(list(PSEUDO_ANOMALY_NAMES))
    out, _, _ = s.expand(x, gen(0))
    assert out.shape == (256 * 8, 3, 32, 32)
