"""Hard transformations that turn a normal image into a pseudo-anomaly.

Every function takes a float batch ``x`` of shape [B, C, H, W] with values in
[0, 1] and C in {1, 3}, and returns a tensor of the same shape and dtype with
values in [0, 1]. Random transforms draw independent parameters for each image,
all at once (no loop over images), from the optional ``generator``; see
:mod:`robustad.transforms._common` for how the generator's device is handled.
All outputs are differentiable with respect to ``x`` (almost everywhere), so
attacks can backpropagate through them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import kornia
import torch

from robustad.errors import ConfigError, InputError
from robustad.transforms._common import (
    check_images,
    color_jitter,
    normal,
    randint,
    sample_jitter,
    uniform,
)

__all__ = [
    "PSEUDO_ANOMALY_NAMES",
    "PseudoAnomalySet",
    "cut_permutation",
    "cutout",
    "cutpaste_scar",
    "elastic",
    "redraw_rejected",
    "rotate90",
]

# Scar geometry, as fractions of the image side (CutPaste uses 2-16 px by
# 10-25 px on 256 px images; these scale that to any size).
_SCAR_WIDTH = (0.02, 0.16)
_SCAR_LENGTH = (0.10, 0.25)
_SCAR_MIN_WIDTH_PX = 2.0
_SCAR_MIN_LENGTH_PX = 3.0
_SCAR_MAX_ANGLE = 45.0
_SCAR_JITTER = 0.2
_SCAR_HUE = 0.1

_CUT_RANGE = (0.2, 0.8)  # split position for cut_permutation, fraction of the side
_CUTOUT_SIDE = (0.1, 0.3)  # cutout rectangle side, fraction of the side

# Elastic: smoothing sigma as a fraction of the shorter side, and the target
# standard deviation of the displacement as a fraction of the image size.
_ELASTIC_SIGMA = 0.08
_ELASTIC_MIN_SIGMA_PX = 1.5
_ELASTIC_DISP = 0.035


def _pixel_grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ys [1, 1, H, 1] and xs [1, 1, 1, W] in x's dtype."""
    h, w = x.shape[-2:]
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
    return ys, xs


def rotate90(x: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """Rotate every image by ``quarter_turns`` * 90 degrees, exactly.

    Same direction as ``torch.rot90(x, quarter_turns, dims=(-2, -1))``
    (counter-clockwise for positive turns). Only square images can be rotated
    by an odd number of quarter turns without changing the shape, so any
    non-square input raises InputError.
    """
    check_images(x)
    if isinstance(quarter_turns, bool) or not isinstance(quarter_turns, int):
        raise InputError(f"quarter_turns must be an int, got {type(quarter_turns).__name__}.")
    if x.shape[-2] != x.shape[-1]:
        raise InputError(
            f"rotation needs square images, got {x.shape[-2]}x{x.shape[-1]}; "
            "resize or crop the images to a square first, or drop 'rotation' from the shifts."
        )
    return torch.rot90(x, quarter_turns % 4, dims=(-2, -1))


def cutpaste_scar(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """CutPaste "scar": move a thin, colour-jittered, rotated strip to another place.

    Per image: a strip of width 2-16 % of W (at least 2 px) and length 10-25 %
    of H (at least 3 px) is cut at one location, its colours are jittered
    (brightness/contrast +-20 %, plus saturation +-20 % and hue +-0.1 turn for
    RGB), it is rotated by U(-45, 45) degrees and pasted at a second location
    that is at least half the scar's extent away on both axes (where the
    image is large enough), so the pasted content always comes from elsewhere.
    """
    check_images(x)
    b, _, h, w = x.shape

    sw = (uniform(b, *_SCAR_WIDTH, x, generator) * w).clamp(min=min(_SCAR_MIN_WIDTH_PX, w), max=w)
    sl = (uniform(b, *_SCAR_LENGTH, x, generator) * h).clamp(min=min(_SCAR_MIN_LENGTH_PX, h), max=h)
    angle = uniform(b, -_SCAR_MAX_ANGLE, _SCAR_MAX_ANGLE, x, generator) * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)

    # Half-extents that fit both the upright source strip and the rotated pasted one.
    ex = torch.maximum(0.5 * (sw * cos.abs() + sl * sin.abs()), 0.5 * sw)
    ey = torch.maximum(0.5 * (sw * sin.abs() + sl * cos.abs()), 0.5 * sl)

    def centres(extent: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Both centres live in [lo, lo + span]; the source is the destination
        # shifted by s in [d, span - d] modulo span, hence at least d away.
        lo = extent - 0.5
        span = (size - 2.0 * extent).clamp(min=0.0)
        d = torch.minimum(extent, 0.5 * span)
        dst = lo + uniform(b, 0.0, 1.0, x, generator) * span
        s = d + uniform(b, 0.0, 1.0, x, generator) * (span - 2.0 * d)
        src = lo + torch.remainder(dst - lo + s, span.clamp(min=1e-6))
        return src, dst

    src_x, dst_x = centres(ex, w)
    src_y, dst_y = centres(ey, h)

    bf, cf, sf, hf = sample_jitter(b, _SCAR_JITTER, _SCAR_HUE, x, generator)
    jittered = color_jitter(x, bf, cf, sf, hf)

    # Upright strip in source coordinates; warping it with the image gives the
    # pasted scar's (anti-aliased) mask.
    ys, xs = _pixel_grid(x)
    box = ((xs - src_x.view(b, 1, 1, 1)).abs() <= 0.5 * sw.view(b, 1, 1, 1)) & (
        (ys - src_y.view(b, 1, 1, 1)).abs() <= 0.5 * sl.view(b, 1, 1, 1)
    )
    box = box.to(x.dtype)

    # Source -> destination pixel map: p = R (s - c_src) + c_dst.
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [B, 2, 2]
    src_c = torch.stack([src_x, src_y], -1).unsqueeze(-1)
    dst_c = torch.stack([dst_x, dst_y], -1).unsqueeze(-1)
    m = torch.cat([rot, dst_c - rot @ src_c], -1)  # [B, 2, 3]

    warped = kornia.geometry.transform.warp_affine(
        torch.cat([jittered, box], 1), m, (h, w), mode="bilinear", padding_mode="zeros", align_corners=True
    )
    patch, mask = warped[:, :-1], warped[:, -1:]
    return (x * (1.0 - mask) + patch * mask).clamp(0.0, 1.0)


def cut_permutation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut each image in two along a random axis and swap the halves.

    Per image the axis (rows or columns) is chosen with equal probability and
    the cut lies at 20-80 % of that side; the result equals rolling the image
    by minus the cut position along that axis. Pixel values are only permuted.
    """
    check_images(x)
    b, c, h, w = x.shape
    axis = randint(b, 0, 2, x, generator)  # 0: cut rows (vertical swap), 1: cut columns
    frac = uniform(b, *_CUT_RANGE, x, generator)
    cut_h = (frac * h).round().long().clamp(1, h - 1)
    cut_w = (frac * w).round().long().clamp(1, w - 1)
    cut_h = torch.where(axis == 0, cut_h, torch.zeros_like(cut_h))
    cut_w = torch.where(axis == 1, cut_w, torch.zeros_like(cut_w))

    # Per-sample roll as index arithmetic: out[i] = x[(i + cut) mod size].
    rows = (torch.arange(h, device=x.device).view(1, h) + cut_h.view(b, 1)) % h
    cols = (torch.arange(w, device=x.device).view(1, w) + cut_w.view(b, 1)) % w
    out = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w))
    return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def cutout(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill a random rectangle per image with a random grey level.

    Each side of the rectangle is 10-30 % of the image side (at least 1 px),
    it lies fully inside the image, and the fill value is U(0, 1), one per
    image and shared by all channels.
    """
    check_images(x)
    b, _, h, w = x.shape
    rh = (uniform(b, *_CUTOUT_SIDE, x, generator) * h).round().clamp(min=1)
    rw = (uniform(b, *_CUTOUT_SIDE, x, generator) * w).round().clamp(min=1)
    y0 = (uniform(b, 0.0, 1.0, x, generator) * (h - rh + 1)).floor()
    x0 = (uniform(b, 0.0, 1.0, x, generator) * (w - rw + 1)).floor()
    fill = uniform(b, 0.0, 1.0, x, generator).view(b, 1, 1, 1)

    ys, xs = _pixel_grid(x)
    y0, x0, rh, rw = (t.view(b, 1, 1, 1) for t in (y0, x0, rh, rw))
    inside = (ys >= y0) & (ys < y0 + rh) & (xs >= x0) & (xs < x0 + rw)
    return torch.where(inside, fill.expand_as(x), x)


def elastic(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Elastic distortion with a Gaussian-smoothed random displacement field.

    The field is white noise smoothed with sigma = 8 % of the shorter side
    (at least 1.5 px) and scaled so that its standard deviation is about
    3.5 % of the image size per axis (about 1 px at 32x32, 8 px at 224x224),
    which bends strokes and edges visibly. Borders are filled by reflection.
    """
    check_images(x)
    b, _, h, w = x.shape
    sigma = max(_ELASTIC_MIN_SIGMA_PX, _ELASTIC_SIGMA * min(h, w))
    ksize = 2 * math.ceil(2.0 * sigma) + 1
    # Smoothing unit-variance white noise with a 2-D Gaussian leaves a standard
    # deviation of about 1 / (2 sqrt(pi) sigma); alpha undoes that. Displacements
    # are in normalised [-1, 1] units, hence the factor 2.
    alpha = 2.0 * _ELASTIC_DISP * 2.0 * math.sqrt(math.pi) * sigma
    noise = normal((b, 2, h, w), x, generator)
    out = kornia.geometry.transform.elastic_transform2d(
        x,
        noise,
        kernel_size=(ksize, ksize),
        sigma=(sigma, sigma),
        alpha=(alpha, alpha),
        align_corners=False,
        mode="bilinear",
        padding_mode="reflection",
    )
    return out.clamp(0.0, 1.0)


# --------------------------------------------------------------------------- #
# Shift set

PSEUDO_ANOMALY_NAMES: tuple[str, ...] = ("rotation", "cutpaste", "cut_permutation", "cutout", "elastic")

_Shift = tuple[str, Callable[[torch.Tensor, torch.Generator | None], torch.Tensor], bool]


def _identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    check_images(x)
    return x.clone()


def redraw_rejected(
    shift: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor],
    x: torch.Tensor,
    out: torch.Tensor,
    accept: Callable[[torch.Tensor], torch.Tensor],
    redraws: int,
    generator: torch.Generator | None = None,
    counts: Counter | None = None,
) -> torch.Tensor:
    """``out`` (= shift(x)) with each image that ``accept`` rejects replaced by a new draw of
    shift on its source image, at most ``redraws`` times; every draw is judged, and the last one
    is kept either way. ``counts`` adds up "candidates", "rejected_first" and "kept_rejected"."""
    out = out.clone()
    pending = torch.arange(x.shape[0], device=x.device)
    for attempt in range(redraws + 1):
        rejected = ~accept(out[pending]).to(device=x.device, dtype=torch.bool)
        if counts is not None and attempt == 0:
            counts["candidates"] += int(pending.numel())
            counts["rejected_first"] += int(rejected.sum())
        pending = pending[rejected]
        if pending.numel() == 0:
            break
        if attempt == redraws:
            if counts is not None:
                counts["kept_rejected"] += int(pending.numel())
            break
        out[pending] = shift(x[pending], generator)
    return out


def _rotation(turns: int) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    def fn(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return rotate90(x, turns)

    return fn


def _shifts_for(name: str) -> list[_Shift]:
    if name == "rotation":
        return [(f"rotate{90 * t}", _rotation(t), True) for t in (1, 2, 3)]
    if name == "cutpaste":
        return [("cutpaste", cutpaste_scar, False)]
    if name == "cut_permutation":
        return [("cut_permutation", cut_permutation, False)]
    if name == "cutout":
        return [("cutout", cutout, False)]
    if name == "elastic":
        return [("elastic", elastic, False)]
    raise ConfigError(f"unknown pseudo-anomaly {name!r}; valid names are: {', '.join(PSEUDO_ANOMALY_NAMES)}.")


class PseudoAnomalySet:
    """An ordered set of K shift transformations t_0 .. t_{K-1}, t_0 = identity.

    ``names`` picks the transformation families, in order: "rotation" adds
    three shifts (90, 180 and 270 degrees), every other name adds one. So
    ``PseudoAnomalySet(["rotation"])`` has K = 4 and
    ``PseudoAnomalySet(["cutpaste", "cutout"])`` has K = 3.
    """

    def __init__(self, names: Sequence[str]):
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ConfigError(
                f"pseudo-anomaly names must be a list of strings, got {names!r}; "
                f"e.g. ['rotation']. Valid names: {', '.join(PSEUDO_ANOMALY_NAMES)}."
            )
        if len(names) == 0:
            raise ConfigError(
                f"at least one pseudo-anomaly is needed; valid names are: {', '.join(PSEUDO_ANOMALY_NAMES)}."
            )
        seen: set[str] = set()
        shifts: list[_Shift] = [("identity", _identity, True)]
        for name in names:
            if not isinstance(name, str):
                raise ConfigError(f"pseudo-anomaly names must be strings, got {name!r}.")
            if name in seen:
                raise ConfigError(f"pseudo-anomaly {name!r} is listed twice; list each name once.")
            seen.add(name)
            shifts.extend(_shifts_for(name))
        self._names = tuple(names)
        self._shifts = shifts

    @property
    def names(self) -> tuple[str, ...]:
        """The family names this set was built from."""
        return self._names

    @property
    def num_shifts(self) -> int:
        """K, the number of shifts including the identity."""
        return len(self._shifts)

    @property
    def shift_names(self) -> list[str]:
        """Name of each shift, index 0 being "identity"."""
        return [s[0] for s in self._shifts]

    def _check_k(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int):
            raise InputError(f"shift index must be an int, got {type(k).__name__}.")
        if not 0 <= k < len(self._shifts):
            n = len(self._shifts)
            raise InputError(f"shift index {k} is out of range; this set has {n} shifts (0..{n - 1}).")

    def is_deterministic(self, k: int) -> bool:
        """Whether shift k ignores the generator (identity and rotations)."""
        self._check_k(k)
        return self._shifts[k][2]

    def apply(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """t_k(x) for the whole batch."""
        self._check_k(k)
        return self._shifts[k][1](x, generator)

    def expand(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        accept: Callable[[torch.Tensor], torch.Tensor] | None = None,
        redraws: int = 0,
        counts: Counter | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All shifts of a batch, shift-major.

        Returns ``(images [K*B, C, H, W], shift_ids [K*B], instance_ids [K*B])``
        where rows k*B .. (k+1)*B-1 hold t_k(x), shift_ids is k there, and
        instance_ids is arange(B) repeated K times. Random shifts are drawn in
        order k = 1, 2, ... from the same generator.

        With ``accept`` (images -> bool per image), the outputs of every random
        shift that it rejects are drawn again, only those, up to ``redraws``
        times; what is still rejected then is kept (``counts``: see
        redraw_rejected). Deterministic shifts
        (identity, rotations) are never redrawn: a redraw would give the same image.
        """
        check_images(x)
        b = x.shape[0]
        k = len(self._shifts)
        parts = []
        for _, fn, deterministic in self._shifts:
            out = fn(x, generator)
            if accept is not None and not deterministic:
                out = redraw_rejected(fn, x, out, accept, redraws, generator, counts)
            parts.append(out)
        images = torch.cat(parts, 0)
        shift_ids = torch.arange(k, device=x.device).repeat_interleave(b)
        instance_ids = torch.arange(b, device=x.device).repeat(k)
        return images, shift_ids, instance_ids

    def __repr__(self) -> str:
        return f"PseudoAnomalySet({list(self._names)!r})"
