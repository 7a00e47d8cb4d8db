"""Surfaces: a second semi-synthetic inspection set, for validation, built from other photographs.

Three categories, each a real photograph that ships with scikit-image, cut into square crops:

- ``cell``: the smooth, grainy microscope background of ``skimage.data.cell()`` (grey; the cell
  itself, rows 300-470, is left out of both regions);
- ``tissue``: the stained tissue of ``skimage.data.immunohistochemistry()`` (colour);
- ``stars``: the sky of ``skimage.data.hubble_deep_field()`` (colour).

Training crops come from the top region of each photograph and test crops from the bottom one,
so no pixel is shared. Anomalous test crops carry one drawn defect each: a ``crack`` (a dark
branching line), ``spots`` (a cluster of small dots), a ``smudge`` (a blurred, shifted patch), a
``dent`` (a bump lit from one side) or a ``tint`` (a patch of another colour). These generators
share no code or parameters with the training pseudo-anomalies (robustad.transforms) nor with the
``textures`` set's defects, so a detector tuned on either does not see its own defects here.
The set exists to check detectors on surfaces nobody tuned them for; label figures on it
"semi-synthetic".

Everything is a deterministic function of ``seed``.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from robustad.data.formats.base import FORMATS, GeneratedFormat, known_category
from robustad.data.splits import AnomalySplit
from robustad.errors import DataError

__all__ = ["CATEGORIES", "DEFECTS", "LAYOUT", "SurfacesFormat", "categories", "check", "load"]

NAME = "surfaces"
CATEGORIES = ("cell", "tissue", "stars")
DEFECTS = ("crack", "spots", "smudge", "dent", "tint")

# category -> (scikit-image function, training rows, test rows); rows are [start, stop)
_SOURCES = {
    "cell": ("cell", (0, 300), (470, 660)),
    "tissue": ("immunohistochemistry", (0, 320), (320, 512)),
    "stars": ("hubble_deep_field", (0, 560), (620, 872)),
}

LAYOUT = (
    "surfaces (semi-synthetic): nothing to download. Crops of scikit-image's cell, "
    "immunohistochemistry and hubble_deep_field photographs (training crops from the top of each, "
    "test crops from the bottom), with drawn defects: crack, spots, smudge, dent, tint."
)

_REF = 64.0  # sizes below are given at a 64 px side and scale with the crop
_STREAM_TRAIN, _STREAM_TEST, _STREAM_DEFECT = 21, 22, 23


@lru_cache(maxsize=len(CATEGORIES))
def _photo(category: str) -> np.ndarray:
    """[H, W, C] float64 in [0, 1], C = 1 or 3 (read-only, cached)."""
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DataError("the surfaces data set needs scikit-image: pip install scikit-image") from err
    raw = np.asarray(getattr(data, _SOURCES[category][0])())
    if raw.dtype != np.uint8 or raw.ndim not in (2, 3):
        raise DataError(f"surfaces: scikit-image's {_SOURCES[category][0]} is {raw.shape} {raw.dtype}; "
                        "this scikit-image version is not supported")
    img = (raw[..., None] if raw.ndim == 2 else raw[..., :3]).astype(np.float64) / 255.0
    img.setflags(write=False)
    return img


def _category(category: str) -> str:
    return known_category(NAME, CATEGORIES, category)




def _crops(photo: np.ndarray, rows: tuple[int, int], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    if rows[1] - rows[0] < size or photo.shape[1] < size:
        raise DataError(f"surfaces: crop_size {size} does not fit a region of {rows[1] - rows[0]} rows")
    tops = rng.integers(rows[0], rows[1] - size, size=n, endpoint=True)
    lefts = rng.integers(0, photo.shape[1] - size, size=n, endpoint=True)
    return np.stack([photo[t:t + size, l:l + size] for t, l in zip(tops, lefts)])


# --------------------------------------------------------------------------- defects
def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(h, dtype=np.float64)[:, None], np.arange(w, dtype=np.float64)[None, :]


def _gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(img, sigma=(sigma, sigma, 0), mode="reflect")


def _crack(img, rng, s):
    """A thin line that wanders and forks once, like a hairline crack: dark, or light on a dark surface."""
    h, w, _ = img.shape
    ys, xs = _coords(h, w)
    alpha = np.zeros((h, w))
    paths = [(rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0, 2 * np.pi), rng.integers(25, 45) * s)]
    fork_at = rng.uniform(0.3, 0.7)
    while paths:
        y, x, angle, length = paths.pop()
        steps = int(length)
        for i in range(steps):
            angle += rng.normal(0, 0.35)
            y, x = y + np.sin(angle), x + np.cos(angle)
            if not (0 <= y < h and 0 <= x < w):
                break
            alpha = np.maximum(alpha, np.clip(1.2 - np.hypot(ys - y, xs - x) / max(0.6 * s, 0.6), 0, 1))
            if i == int(fork_at * steps) and len(paths) == 0 and length > 15 * s:
                paths.append((y, x, angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2), length * 0.5))
                fork_at = 2.0  # one fork only
    depth = rng.uniform(0.35, 0.6) * alpha[..., None]
    target = 1.0 if img.mean() < 0.3 else 0.0
    return img * (1 - depth) + target * depth, alpha


def _spots(img, rng, s):
    """A cluster of small dots, all darker or all brighter than the surface."""
    h, w, _ = img.shape
    ys, xs = _coords(h, w)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    spread = rng.uniform(5, 11) * s
    alpha = np.zeros((h, w))
    for _ in range(rng.integers(5, 13)):
        r = rng.uniform(0.8, 2.0) * s
        py, px = cy + rng.normal(0, spread / 2), cx + rng.normal(0, spread / 2)
        alpha = np.maximum(alpha, np.clip(r + 0.5 - np.hypot(ys - py, xs - px), 0, 1))
    target = 0.0 if rng.random() < 0.5 else 1.0
    contrast = rng.uniform(0.4, 0.7)
    k = contrast * alpha[..., None]
    return img * (1 - k) + target * k, alpha


def _ellipse(h, w, rng, s, radius):
    ys, xs = _coords(h, w)
    a, b = rng.uniform(*radius) * s, rng.uniform(*radius) * s
    cy, cx = rng.uniform(a, h - a) if h > 2 * a else h / 2, rng.uniform(a, w - a) if w > 2 * a else w / 2
    t = rng.uniform(0, np.pi)
    u = (xs - cx) * np.cos(t) + (ys - cy) * np.sin(t)
    v = -(xs - cx) * np.sin(t) + (ys - cy) * np.cos(t)
    return np.sqrt((u / a) ** 2 + (v / b) ** 2), (cy, cx)


def _smudge(img, rng, s):
    """A soft patch where the detail is blurred away and the brightness shifts."""
    h, w, _ = img.shape
    q, _ = _ellipse(h, w, rng, s, (6, 13))
    alpha = np.clip((1.0 - q) / 0.3, 0, 1)
    blurred = _gauss_blur(img, rng.uniform(1.5, 3.0) * s) + rng.choice([-1, 1]) * rng.uniform(0.08, 0.18)
    return img * (1 - alpha[..., None]) + np.clip(blurred, 0, 1) * alpha[..., None], alpha


def _dent(img, rng, s):
    """A bump lit from one side: one flank brighter, the other darker."""
    h, w, _ = img.shape
    q, _ = _ellipse(h, w, rng, s, (4, 9))
    height = np.exp(-2.0 * q**2)
    gy, gx = np.gradient(height)
    light = rng.uniform(0, 2 * np.pi)
    shade = gx * np.cos(light) + gy * np.sin(light)
    shade = shade / max(np.abs(shade).max(), 1e-9)
    strength = rng.uniform(0.25, 0.45)
    alpha = np.clip(np.abs(shade) * 2, 0, 1) * (q < 1.3)
    return img + strength * shade[..., None], alpha


def _tint(img, rng, s):
    """A patch of another colour (on grey images: another brightness), with soft edges."""
    h, w, c = img.shape
    q, _ = _ellipse(h, w, rng, s, (6, 12))
    alpha = np.clip((1.0 - q) / 0.25, 0, 1)
    shift = rng.uniform(0.15, 0.3) * (np.eye(3)[rng.integers(3)] - 0.5) * 2 if c == 3 else \
        np.array([rng.choice([-1, 1]) * rng.uniform(0.15, 0.3)])
    return img + alpha[..., None] * shift, alpha


_GENERATORS = {"crack": _crack, "spots": _spots, "smudge": _smudge, "dent": _dent, "tint": _tint}


def _resize(x: np.ndarray, size: int | None) -> torch.Tensor:
    """[N, H, W, C] -> float32 [N, C, S, S] in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
    if size is not None and tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t.clamp_(0.0, 1.0)


def _limit(value, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
        raise DataError(f"surfaces: {name} must be a positive integer or None, got {value!r}.")


def load(root: str | os.PathLike[str] | None = None, category: str = "cell", image_size: int | None = None,
         channels: int | None = None, max_train: int | None = None, max_test: int | None = None, seed: int = 0,
         crop_size: int = 64, n_train: int = 400, n_test_normal: int = 100, n_test_anomalous: int = 100):
    """The surfaces split of one category as an :class:`AnomalySplit` (``root`` is ignored).

    ``n_train`` training crops; a test set of ``n_test_normal`` normal crops and
    ``n_test_anomalous`` crops with one defect each (kinds in turn). ``max_train`` / ``max_test``
    keep seeded subsets (the test subset half normal). ``channels`` 1 or 3 converts (grey is the
    channel mean; colour repeats grey). Masks mark each defect.
    """
    category = _category(category)
    for value, name in ((image_size, "image_size"), (max_train, "max_train"), (max_test, "max_test"),
                        (n_train, "n_train"), (n_test_normal, "n_test_normal"), (n_test_anomalous, "n_test_anomalous")):
        _limit(value, name)
    if channels not in (None, 1, 3):
        raise DataError(f"surfaces: channels must be 1, 3 or None, got {channels!r}.")
    _limit(crop_size, "crop_size")
    photo = _photo(category)
    _, train_rows, test_rows = _SOURCES[category]
    seed = int(seed)
    train = _crops(photo, train_rows, n_train, crop_size, np.random.default_rng([_STREAM_TRAIN, seed]))
    normal = _crops(photo, test_rows, n_test_normal, crop_size, np.random.default_rng([_STREAM_TEST, seed, 0]))
    hosts = _crops(photo, test_rows, n_test_anomalous, crop_size, np.random.default_rng([_STREAM_TEST, seed, 1]))
    scale = crop_size / _REF
    anomalous, alphas, paths = [], [], []
    for j, host in enumerate(hosts):
        kind = DEFECTS[j % len(DEFECTS)]
        rng = np.random.default_rng([_STREAM_DEFECT, seed, CATEGORIES.index(category), j])
        out, alpha = _GENERATORS[kind](host, rng, scale)
        anomalous.append(np.clip(out, 0, 1))
        alphas.append(alpha >= 0.5 if (alpha >= 0.5).any() else alpha >= 0.5 * alpha.max())
        paths.append(f"{NAME}/{category}/test/anomaly/{j:04d}-{kind}")
    test = np.concatenate([normal, np.stack(anomalous)])
    masks = np.concatenate([np.zeros((n_test_normal, crop_size, crop_size), bool), np.stack(alphas)])
    labels = np.r_[np.zeros(n_test_normal, np.int64), np.ones(n_test_anomalous, np.int64)]
    paths = [f"{NAME}/{category}/test/normal/{i:04d}" for i in range(n_test_normal)] + paths
    pick = np.random.default_rng([_STREAM_TEST, seed, 2])
    if max_train is not None and max_train < len(train):
        train = train[np.sort(pick.choice(len(train), max_train, replace=False))]
    if max_test is not None and max_test < len(labels):
        k_norm = min(max_test // 2, n_test_normal)
        k_anom = min(max_test - k_norm, n_test_anomalous)
        chosen = np.sort(np.r_[pick.choice(n_test_normal, k_norm, replace=False),
                               n_test_normal + pick.choice(n_test_anomalous, k_anom, replace=False)])
        test, masks, labels, paths = test[chosen], masks[chosen], labels[chosen], [paths[i] for i in chosen]
    train_t, test_t = _resize(train, image_size), _resize(test, image_size)
    mask_t = _resize(masks[..., None].astype(np.float64), image_size).ge(0.5).float()
    if channels is not None and train_t.shape[1] != channels:
        convert = (lambda t: t.mean(1, keepdim=True)) if channels == 1 else (lambda t: t.repeat(1, 3, 1, 1))
        train_t, test_t = convert(train_t), convert(test_t)
    return AnomalySplit(train=train_t.contiguous(), test=test_t.contiguous(), test_labels=torch.from_numpy(labels),
                        name=NAME, normal_classes=(), category=category, test_masks=mask_t, test_paths=paths,
                        semi_synthetic=True)


class SurfacesFormat(GeneratedFormat, name=NAME):
    summary = "semi-synthetic, for validation: crops of scikit-image's cell, tissue and star photographs with drawn defects"
    example = "robustad train --data surfaces --category cell --out runs/cell"
    layout = LAYOUT
    category_names = CATEGORIES
    photo = staticmethod(_photo)
    generate = staticmethod(load)


categories, check = FORMATS[NAME].categories, FORMATS[NAME].check
