"""Textures: a semi-synthetic, industrial-style anomaly-detection set built from photographs.

The three grey texture photographs that ship inside scikit-image (``brick``, ``grass`` and
``gravel``, 512 x 512 pixels each) are the three categories. Normal images are square crops of
one photograph; anomalous test images are normal test crops with a synthetic surface defect
painted in (a scratch, a stain, a hole, or a patch of a different texture). The defects are
generated here, so this set is *semi-synthetic*: real textures, artificial anomalies. Scores on
it say how a detector reacts to plausible local defects, not how it does on real production
faults.

Layout of each photograph (rows; every crop lies entirely inside one region, so training and
test crops never share a pixel)::

    rows   0 .. 319   training region  (normal training crops)
    rows 320 .. 511   test region      (normal and anomalous test crops, and the donor patches)

The defect generators are independent of the training-time pseudo-anomalies (the
``pseudo_anomaly`` module of the transforms package, which this module does not import): other
shapes, other code, other parameters, so a detector trained with those cannot simply recognise
its own augmentations here. They are usable
on their own through :func:`make_defect`.

Everything is a deterministic function of ``seed``: the crop positions, the defect kinds and
every defect's random parameters. Each test image has its own random stream, so ``max_test``
picks images from the full set without changing them.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from robustad.data.formats.base import FORMATS, GeneratedFormat, known_category
from robustad.data.splits import AnomalySplit
from robustad.errors import DataError, InputError

__all__ = [
    "CATEGORIES",
    "DEFECTS",
    "LAYOUT",
    "TEST_ROWS",
    "TRAIN_ROWS",
    "TexturesFormat",
    "categories",
    "check",
    "crop_boxes",
    "load",
    "make_defect",
]

NAME = "textures"
CATEGORIES = ("brick", "grass", "gravel")
DEFECTS = ("scratch", "stain", "hole", "patch")

PHOTO_SIDE = 512
TRAIN_ROWS = (0, 320)  # [start, stop) rows of each photograph used for training crops
TEST_ROWS = (320, PHOTO_SIDE)  # [start, stop) rows used for test crops and donor patches

LAYOUT = (
    "textures (semi-synthetic): nothing to download or put anywhere. Built from the brick, "
    "grass and gravel photographs bundled with scikit-image (pip install scikit-image); "
    "training crops come from rows 0-319 of each photograph, test crops from rows 320-511, "
    "and test anomalies are synthetic defects (scratch, stain, hole, foreign patch)."
)

# Geometry is given at a 64-pixel reference side and scaled with the image.
_REF_SIDE = 64.0

# scratch: stroke width in reference pixels, length as a fraction of the side, contrast
_SCRATCH_WIDTH = (1.0, 3.0)
_SCRATCH_LENGTH = (0.35, 0.8)
_SCRATCH_BEND = 0.18  # std of the bezier control-point offsets, fraction of the length
_SCRATCH_CONTRAST = (0.2, 0.4)
_SCRATCH_SAMPLES = 40  # polyline points along the curve

# stain: area fraction, edge softness (reference px), strength of the multiplicative shift
_STAIN_AREA = (0.03, 0.15)
_STAIN_SOFTNESS = (1.0, 2.5)
_STAIN_STRENGTH = (0.25, 0.5)

# hole: area fraction of the dark core, aspect ratio, core brightness, rim width and relief
_HOLE_AREA = (0.03, 0.10)
_HOLE_ASPECT = (0.55, 1.0)
_HOLE_FLOOR = (0.03, 0.15)
_HOLE_RIM = (1.5, 3.0)
_HOLE_RELIEF = (0.1, 0.25)

# patch: area fraction, how much of the donor/host brightness gap is removed, edge softness
_PATCH_AREA = (0.04, 0.15)
_PATCH_MATCH = (0.5, 1.0)
_PATCH_SOFTNESS = (0.5, 1.5)

_BLOB_NOISE = 0.45  # irregularity of blob outlines (weight of smooth noise vs. the radial bowl)
_BLUR_TRUNCATE = 2.0  # gaussian blurs stop at 2 sigma, so every change stays near its mask

# independent random streams, keyed so that one never shifts another
_STREAM_TRAIN, _STREAM_TEST, _STREAM_DEFECT, _STREAM_SUBSET = 11, 12, 13, 14


# --------------------------------------------------------------------------- photographs


def _skimage_data():
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DataError(
            "the textures data set needs scikit-image (its bundled photographs are the textures); "
            "install it with: pip install scikit-image"
        ) from err
    return data


@lru_cache(maxsize=len(CATEGORIES))
def _photo(category: str) -> np.ndarray:
    """The category's photograph as float64 [512, 512] in [0, 1] (read-only, cached)."""
    raw = np.asarray(getattr(_skimage_data(), category)())
    if raw.shape != (PHOTO_SIDE, PHOTO_SIDE) or raw.dtype != np.uint8:
        raise DataError(
            f"textures: scikit-image's {category!r} photograph is {raw.shape} {raw.dtype}, expected a "
            f"{PHOTO_SIDE}x{PHOTO_SIDE} uint8 grey image; this scikit-image version is not supported."
        )
    img = raw.astype(np.float64) / 255.0
    img.setflags(write=False)
    return img


def _category(category: str) -> str:
    return known_category(NAME, CATEGORIES, category)


def crop_boxes(part: str, n: int, crop_size: int, seed: int = 0) -> np.ndarray:
    """Where the crops of one part come from: int64 ``[n, 4]`` rows ``(top, left, bottom, right)``.

    ``part`` is ``"train"`` (inside :data:`TRAIN_ROWS`) or ``"test"`` (inside :data:`TEST_ROWS`);
    bottom/right are exclusive. The positions are uniform and depend only on ``(part, n,
    crop_size, seed)``; :func:`load` uses exactly these boxes, the same for every category.
    """
    rows = {"train": TRAIN_ROWS, "test": TEST_ROWS}.get(part)
    if rows is None:
        raise InputError(f"part must be 'train' or 'test', got {part!r}.")
    stream = _STREAM_TRAIN if part == "train" else _STREAM_TEST
    return _boxes(rows, n, crop_size, np.random.default_rng([stream, int(seed)]))


def _boxes(rows: tuple[int, int], n: int, crop_size: int, rng: np.random.Generator) -> np.ndarray:
    start, stop = rows
    tops = rng.integers(start, stop - crop_size, size=n, endpoint=True)
    lefts = rng.integers(0, PHOTO_SIDE - crop_size, size=n, endpoint=True)
    return np.stack([tops, lefts, tops + crop_size, lefts + crop_size], axis=1).astype(np.int64)


def _crops(photo: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return np.stack([photo[t:b, l:r] for t, l, b, r in boxes])


# --------------------------------------------------------------------------- defect generators


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ys [H, 1] and xs [1, W]."""
    return np.arange(h, dtype=np.float64)[:, None], np.arange(w, dtype=np.float64)[None, :]


def _scale(image: np.ndarray) -> float:
    return min(image.shape) / _REF_SIDE


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise with zero mean and unit standard deviation."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma=max(sigma, 0.5), mode="reflect")
    return (field - field.mean()) / max(field.std(), 1e-12)


def _soften(region: np.ndarray, sigma: float) -> np.ndarray:
    """A hard region turned into a soft alpha in [0, 1] with a blurred edge of about ``sigma``."""
    from scipy.ndimage import gaussian_filter

    alpha = gaussian_filter(region.astype(np.float64), sigma=max(sigma, 0.3), mode="constant",
                            truncate=_BLUR_TRUNCATE)
    # Drop the faint gaussian tails (below 0.1) and saturate the inside (above 0.9), keeping 0.5
    # where it was, so the edge is soft but the change stays close to the alpha >= 0.5 mask.
    t = np.clip((alpha - 0.1) / 0.8, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blob(shape: tuple[int, int], area: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular, mostly compact region covering ``area`` (fraction) of the image.

    A bowl around a random centre plus smooth noise, thresholded at the quantile that keeps
    exactly the requested fraction of pixels, so the size is controlled even near the border.
    """
    h, w = shape
    ys, xs = _grid(h, w)
    radius = np.sqrt(area * h * w / np.pi)
    cy = rng.uniform(min(radius, h / 2), max(h - radius, h / 2))
    cx = rng.uniform(min(radius, w / 2), max(w - radius, w / 2))
    bowl = -((ys - cy) ** 2 + (xs - cx) ** 2) / radius**2
    score = bowl + _BLOB_NOISE * _smooth_noise(shape, 0.35 * radius, rng)
    return score >= np.quantile(score, 1.0 - area)


def _segment_distance(ys: np.ndarray, xs: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance from every pixel centre to the polyline through ``pts`` [K, 2] (y, x)."""
    a, b = pts[:-1], pts[1:]  # [S, 2]
    d = b - a
    length2 = np.maximum((d**2).sum(axis=1), 1e-12)
    py, px = ys[..., None], xs[..., None]  # [H, 1, 1] and [1, W, 1]
    t = np.clip(((py - a[:, 0]) * d[:, 0] + (px - a[:, 1]) * d[:, 1]) / length2, 0.0, 1.0)
    dist2 = (py - a[:, 0] - t * d[:, 0]) ** 2 + (px - a[:, 1] - t * d[:, 1]) ** 2  # [H, W, S]
    return np.sqrt(dist2.min(axis=-1))


def _scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin anti-aliased curve (cubic bezier), darker or brighter than the surface."""
    h, w = image.shape
    side = min(h, w)
    scale = _scale(image)
    length = rng.uniform(*_SCRATCH_LENGTH) * side
    angle = rng.uniform(0.0, 2.0 * np.pi)
    chord = length * np.array([np.sin(angle), np.cos(angle)])
    limit = np.array([h - 1, w - 1], dtype=np.float64)
    # start where the whole chord fits when it can
    lo = np.clip(-chord, 0.0, limit)
    hi = np.clip(limit - chord, lo, limit)
    p0 = rng.uniform(lo, hi)
    p3 = np.clip(p0 + chord, 0.0, limit)
    normal = np.array([-chord[1], chord[0]]) / max(length, 1e-12)
    bends = rng.normal(0.0, _SCRATCH_BEND * length, size=2)
    p1 = np.clip(p0 + (p3 - p0) / 3.0 + bends[0] * normal, 0.0, limit)
    p2 = np.clip(p0 + 2.0 * (p3 - p0) / 3.0 + bends[1] * normal, 0.0, limit)
    t = np.linspace(0.0, 1.0, _SCRATCH_SAMPLES)[:, None]
    curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3

    width = max(1.0, rng.uniform(*_SCRATCH_WIDTH) * scale)
    ys, xs = _grid(h, w)
    dist = _segment_distance(ys, xs, curve)
    alpha = np.clip(width / 2.0 + 0.5 - dist, 0.0, 1.0)  # pixel coverage of a stroke of that width
    sign = 1.0 if rng.random() < 0.5 else -1.0
    contrast = rng.uniform(*_SCRATCH_CONTRAST)
    # a little variation along the stroke, as real scratches catch the light unevenly
    ripple = 1.0 + 0.25 * _smooth_noise((h, w), 4.0 * scale, rng).clip(-2.0, 2.0) / 2.0
    out = image + sign * contrast * ripple * alpha
    return np.clip(out, 0.0, 1.0), alpha


def _stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A soft-edged irregular blob that multiplies the surface darker or lighter."""
    scale = _scale(image)
    area = rng.uniform(*_STAIN_AREA)
    alpha = _soften(_blob(image.shape, area, rng), rng.uniform(*_STAIN_SOFTNESS) * scale)
    strength = rng.uniform(*_STAIN_STRENGTH)
    # uneven soaking: the strength varies smoothly inside the stain (between 70% and 100%)
    uneven = 0.85 + 0.15 * np.tanh(_smooth_noise(image.shape, 5.0 * scale, rng))
    k = alpha * strength * uneven
    if rng.random() < 0.5:
        out = image * (1.0 - k)  # darker: absorbs a fraction k of the light
    else:
        out = 1.0 - (1.0 - image) * (1.0 - k)  # lighter: bleaches a fraction k towards white
    return np.clip(out, 0.0, 1.0), alpha


def _hole(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark elliptical pit with a shaded rim, lit from a random direction."""
    h, w = image.shape
    scale = _scale(image)
    area = rng.uniform(*_HOLE_AREA)
    aspect = rng.uniform(*_HOLE_ASPECT)
    semi_a = np.sqrt(area * h * w / (np.pi * aspect))
    semi_b = semi_a * aspect
    rim = rng.uniform(*_HOLE_RIM) * scale
    reach = semi_a + rim
    cy = rng.uniform(min(reach, h / 2), max(h - reach, h / 2))
    cx = rng.uniform(min(reach, w / 2), max(w - reach, w / 2))
    theta = rng.uniform(0.0, np.pi)
    ys, xs = _grid(h, w)
    u = (xs - cx) * np.cos(theta) + (ys - cy) * np.sin(theta)
    v = -(xs - cx) * np.sin(theta) + (ys - cy) * np.cos(theta)
    q = np.sqrt((u / semi_a) ** 2 + (v / semi_b) ** 2)
    signed = (q - 1.0) * semi_b  # roughly the distance outside the edge, in pixels

    soft = 0.75 * scale
    core = np.clip(0.5 - signed / (2.0 * soft), 0.0, 1.0)
    core = core * core * (3.0 - 2.0 * core)  # smoothstep edge
    floor = rng.uniform(*_HOLE_FLOOR)
    # the pit is darkest in the middle; a faint trace of the texture survives inside
    inside = floor + 0.12 * np.minimum(q, 1.0) ** 2 + 0.15 * (image - image.mean())
    out = image * (1.0 - core) + core * inside

    band = np.clip(1.0 - (signed / rim) ** 2, 0.0, 1.0) ** 2  # compact bump around the edge
    light = rng.uniform(0.0, 2.0 * np.pi)
    facing = np.cos(np.arctan2(v / semi_b, u / semi_a) - light)  # +1 on the lit side of the rim
    out = out + rng.uniform(*_HOLE_RELIEF) * band * facing
    return np.clip(out, 0.0, 1.0), np.maximum(core, band)


def _fit_donor(donor: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    donor = np.asarray(donor, dtype=np.float64)
    if donor.ndim != 2:
        raise InputError(f"donor must be a 2-D grey image [H, W], got shape {donor.shape}.")
    dh, dw = donor.shape
    h, w = shape
    if dh < h or dw < w:
        raise InputError(f"donor {donor.shape} is smaller than the image {shape}; pass one at least as large.")
    top = int(rng.integers(0, dh - h, endpoint=True))
    left = int(rng.integers(0, dw - w, endpoint=True))
    return donor[top:top + h, left:left + w]


def _patch(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A patch of another texture (irregular or a rectangle) blended into the surface."""
    h, w = image.shape
    scale = _scale(image)
    source = _fit_donor(donor, (h, w), rng)
    area = rng.uniform(*_PATCH_AREA)
    if rng.random() < 0.5:
        region = _blob((h, w), area, rng)
    else:
        ratio = rng.uniform(0.5, 2.0)
        ph = int(np.clip(round(np.sqrt(area * h * w * ratio)), 2, h))
        pw = int(np.clip(round(area * h * w / ph), 2, w))
        top = int(rng.integers(0, h - ph, endpoint=True))
        left = int(rng.integers(0, w - pw, endpoint=True))
        region = np.zeros((h, w), dtype=bool)
        region[top:top + ph, left:left + pw] = True
    alpha = _soften(region, rng.uniform(*_PATCH_SOFTNESS) * scale)
    # Foreign material is not simply brighter or darker: pull the donor's mean part of the way
    # to the host's under the patch, so the anomaly is mostly a change of texture.
    gap = image[region].mean() - source[region].mean()
    source = np.clip(source + rng.uniform(*_PATCH_MATCH) * gap, 0.0, 1.0)
    return image * (1.0 - alpha) + alpha * source, alpha


def _defect(image: np.ndarray, kind: str, rng: np.random.Generator,
            donor: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(defective image, soft alpha in [0, 1]) as float64."""
    if kind == "scratch":
        return _scratch(image, rng)
    if kind == "stain":
        return _stain(image, rng)
    if kind == "hole":
        return _hole(image, rng)
    if donor is None:
        raise InputError("a 'patch' defect needs a donor image of another texture; pass donor=...")
    return _patch(image, rng, donor)


def make_defect(image: np.ndarray, kind: str, rng: np.random.Generator,
                donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paint one synthetic defect into a grey image.

    ``image`` is a float [H, W] array in [0, 1]; ``kind`` one of :data:`DEFECTS`; ``rng`` a
    numpy Generator that draws every random choice; ``donor`` a grey [H', W'] image of another
    texture, at least as large as ``image``, required for ``"patch"`` (a random window of it is
    used) and ignored otherwise. Returns the defective image (float32 [H, W] in [0, 1]; the input
    is not modified) and its mask (bool [H, W], True where the defect's soft alpha is >= 0.5).
    Sizes are given at a 64-pixel reference and scale with the image; scratches are 1-3 px wide
    at 64 px, stains, holes and patches cover roughly 3-15% of the image.
    """
    if kind not in DEFECTS:
        raise InputError(f"unknown defect kind {kind!r}; the kinds are {list(DEFECTS)}.")
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 4:
        raise InputError(f"image must be a 2-D grey array [H, W] with H, W >= 4, got shape {img.shape}.")
    if not np.all(np.isfinite(img)) or img.min() < 0.0 or img.max() > 1.0:
        raise InputError("image values must be finite and in [0, 1].")
    out, alpha = _defect(img, kind, rng, donor)
    return out.astype(np.float32), _threshold(alpha)


def _threshold(alpha: np.ndarray) -> np.ndarray:
    """alpha >= 0.5, or, if a very thin defect never reaches that, its strongest pixels."""
    mask = alpha >= 0.5
    if not mask.any() and alpha.max() > 0:
        mask = alpha >= 0.5 * alpha.max()
    return mask


# --------------------------------------------------------------------------- loader


def _positive(value, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
        raise DataError(f"textures: {name} must be a positive integer or None, got {value!r}.")


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"textures: {name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _resize(x: np.ndarray, size: int | None) -> torch.Tensor:
    """[N, H, W] float64 -> float32 [N, 1, S, S] (anti-aliased bilinear), values clipped to [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
    if size is None or tuple(t.shape[-2:]) == (size, size):
        return t
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def _pick(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray:
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def load(
    root: str | os.PathLike[str] | None = None,
    category: str = "brick",
    image_size: int | None = None,
    channels: int | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    crop_size: int = 64,
    n_train: int = 500,
    n_test_normal: int = 100,
    n_test_anomalous: int = 100,
):
    """The semi-synthetic textures split of one category as an :class:`AnomalySplit`.

    ``root`` is ignored (the photographs ship with scikit-image). Training images are
    ``n_train`` random ``crop_size`` crops of the category's photograph from its training rows;
    the test set is ``n_test_normal`` normal crops followed by ``n_test_anomalous`` crops with one
    synthetic defect each, the kinds taking turns (scratch, stain, hole, patch, scratch, ...).
    Defects are painted at crop resolution, then everything is resized to ``image_size`` (if
    given); masks are resized with the images and thresholded at 0.5. Images are grey (1
    channel) unless ``channels=3``, which repeats the grey channel. ``max_train`` keeps a seeded
    random subset of the training crops, ``max_test`` a seeded subset of up to ``max_test // 2``
    normal test images and the rest anomalous. ``test_paths`` name each test image, e.g.
    ``textures/brick/test/anomaly/0003-scratch`` (identifiers only; no files are written).
    """
    category = _category(category)
    _positive(image_size, "image_size")
    _positive(max_train, "max_train")
    _positive(max_test, "max_test")
    if channels not in (None, 1, 3):
        raise DataError(f"textures: channels must be 1, 3 or None, got {channels!r}.")
    max_crop = TEST_ROWS[1] - TEST_ROWS[0]
    crop_size = _count(crop_size, "crop_size", 8)
    if crop_size > max_crop:
        raise DataError(
            f"textures: crop_size must be at most {max_crop} (the height of the test region), got {crop_size}."
        )
    n_train = _count(n_train, "n_train", 1)
    n_norm = _count(n_test_normal, "n_test_normal", 1)
    n_anom = _count(n_test_anomalous, "n_test_anomalous", 1)
    seed = int(seed)

    photo = _photo(category)
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence([_STREAM_SUBSET, seed]).spawn(2))
    train_boxes = crop_boxes("train", n_train, crop_size, seed)[_pick(n_train, max_train, rng_train)]
    test_boxes = crop_boxes("test", n_norm + n_anom, crop_size, seed)
    labels = np.r_[np.zeros(n_norm, dtype=np.int64), np.ones(n_anom, dtype=np.int64)]
    if max_test is None or max_test >= len(labels):
        chosen = np.arange(len(labels))
    else:
        k_norm = min(max_test // 2, n_norm)
        k_anom = min(max_test - k_norm, n_anom)
        k_norm = min(max_test - k_anom, n_norm)
        chosen = np.sort(np.r_[rng_test.choice(n_norm, size=k_norm, replace=False),
                               n_norm + rng_test.choice(n_anom, size=k_anom, replace=False)])

    cat_index = CATEGORIES.index(category)
    others = [c for c in CATEGORIES if c != category]
    images, alphas, paths = [], [], []
    for i in chosen:
        crop = _crops(photo, test_boxes[i:i + 1])[0]
        if labels[i] == 0:
            images.append(crop)
            alphas.append(np.zeros_like(crop))
            paths.append(f"{NAME}/{category}/test/normal/{i:04d}")
            continue
        j = int(i) - n_norm
        kind = DEFECTS[j % len(DEFECTS)]
        rng = np.random.default_rng([_STREAM_DEFECT, seed, cat_index, j])
        donor = None
        if kind == "patch":
            other = others[int(rng.integers(len(others)))]
            donor = _crops(_photo(other), _boxes(TEST_ROWS, 1, crop_size, rng))[0]
        out, alpha = _defect(crop, kind, rng, donor)
        images.append(out)
        alphas.append(alpha)
        paths.append(f"{NAME}/{category}/test/anomaly/{j:04d}-{kind}")

    train = _resize(_crops(photo, train_boxes), image_size)
    test = _resize(np.stack(images), image_size)
    soft = _resize(np.stack(alphas), image_size)
    masks = torch.from_numpy(np.stack([_threshold(a[0].numpy()) for a in soft])[:, None].astype(np.float32))
    if channels == 3:
        train, test = train.repeat(1, 3, 1, 1), test.repeat(1, 3, 1, 1)
    return AnomalySplit(
        train=train.contiguous(),
        test=test.contiguous(),
        test_labels=torch.from_numpy(labels[chosen]),
        name=NAME,
        normal_classes=(),
        category=category,
        test_masks=masks,
        test_paths=paths,
        semi_synthetic=True,
    )


class TexturesFormat(GeneratedFormat, name=NAME):
    summary = "semi-synthetic: crops of scikit-image's brick/grass/gravel with drawn defects"
    example = "robustad train --data textures --category brick --out runs/brick"
    layout = LAYOUT
    category_names = CATEGORIES
    photo = staticmethod(_photo)
    generate = staticmethod(load)


categories, check = FORMATS[NAME].categories, FORMATS[NAME].check
