"""Synthetic local defects with their masks: pseudo-anomalies for patch-level training.

A defect is a shape (where) times a fill (what). Shapes: an irregular ``blob`` (a smooth random
field around a random centre, cut at the level that keeps a drawn area), a thin curved
``stroke`` (a quadratic Bezier curve 1-4 px wide) and an axis-aligned ``rectangle``. Fills:
``shade`` (the surface made lighter or darker, tinted on colour images), ``transplant`` (the
same place of another image of the batch, moved and mirrored: foreign texture), ``noise``
(Gaussian grain) and ``smooth`` (detail wiped out: a local average, or a flat grey). Sizes are
fractions of the image, so they scale with it.

These are generic families of surface damage, drawn for training only; the test defects of
the semi-synthetic ``textures`` data set are made by separate code with other shapes and
parameters (robustad.data.formats.textures), so a detector cannot score well there by
recognising its own training defects.

Every image of a batch gets its own shape, fill and parameters, drawn from the optional
generator (the package's randomness convention, robustad.transforms._common).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from robustad.errors import ConfigError
from robustad.transforms._common import check_images, normal, randint, uniform

__all__ = ["DEFECT_FILLS", "DEFECT_SHAPES", "SyntheticDefects"]

DEFECT_SHAPES = ("blob", "stroke", "rectangle")
DEFECT_FILLS = ("shade", "transplant", "noise", "smooth")

_BLOB_AREA = (0.02, 0.12)  # fraction of the image
_BLOB_ROUGHNESS = 0.6  # weight of the smooth random field against the round bowl
_BLOB_GRAIN = 8.0  # pixels per cell of the random field
_STROKE_WIDTH = (1.0, 3.5)  # pixels at a 64 px side, scaled with sqrt(side / 64)
_STROKE_BEND = 0.2  # std of the control point's offset, fraction of the side
_STROKE_POINTS = 48
_RECT_SIDE = (0.1, 0.33)  # fraction of the side
_SHADE = (0.15, 0.5)  # fraction of the way to white (lighter) or to black (darker)
_TINT = 0.3  # colour images: per-channel spread of the shade
_NOISE_STD = (0.05, 0.25)
_FLAT_SPREAD = 0.2  # flat fill: the image mean plus up to +-0.2
_VISIBLE = 2.0 / 255  # smallest change of a pixel that counts as part of the defect


class SyntheticDefects:
    """Paint one random local defect into every image: ``(defective, mask) = defects(x, generator)``.

    ``x`` is [B, C, H, W] in [0, 1]; ``defective`` has its shape and range, ``mask`` is
    [B, 1, H, W] with 1 where the defect was painted and changed the pixel by more than 2/255
    (the fill is blended in with a one-pixel soft edge around it).
    """

    def __init__(self, shapes: Sequence[str] = DEFECT_SHAPES, fills: Sequence[str] = DEFECT_FILLS):
        for kind, names, valid in (("shape", shapes, DEFECT_SHAPES), ("fill", fills, DEFECT_FILLS)):
            if isinstance(names, str) or not names or any(n not in valid for n in names) or len(set(names)) != len(names):
                raise ConfigError(f"defect {kind}s must be a non-empty list of distinct names from "
                                  f"{', '.join(valid)}; got {names!r}")
        self.shapes = tuple(shapes)
        self.fills = tuple(fills)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(x)
        b, _, h, w = x.shape
        shape = randint(b, 0, len(self.shapes), x, generator)
        mask = torch.zeros(b, 1, h, w, device=x.device, dtype=x.dtype)
        for i, name in enumerate(self.shapes):
            drawn = _SHAPES[name](b, h, w, x, generator)  # every shape is drawn, so the RNG stream stays fixed
            mask = torch.where((shape == i).view(b, 1, 1, 1), drawn, mask)
        fill_kind = randint(b, 0, len(self.fills), x, generator)
        fill = x
        for i, name in enumerate(self.fills):
            drawn = _FILLS[name](x, generator)
            fill = torch.where((fill_kind == i).view(b, 1, 1, 1), drawn, fill)
        alpha = torch.maximum(F.avg_pool2d(mask, 3, 1, 1), mask)  # a soft edge outside the mask only
        defective = (x * (1 - alpha) + fill.clamp(0, 1) * alpha).clamp(0, 1)
        # where the fill changed nothing (darkening black, say) there is no defect to see
        visible = (defective - x).abs().amax(dim=1, keepdim=True) > _VISIBLE
        return defective, mask * visible.to(mask.dtype)

    def __repr__(self) -> str:
        return f"SyntheticDefects(shapes={list(self.shapes)!r}, fills={list(self.fills)!r})"


# --- shapes: [B, 1, H, W] masks in {0, 1} -----------------------------------------------------------------
def _grid(h: int, w: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
    return ys, xs


def _blob(b: int, h: int, w: int, x: torch.Tensor, generator) -> torch.Tensor:
    area = uniform((b, 1, 1, 1), *_BLOB_AREA, x, generator)
    cells = (max(2, round(h / _BLOB_GRAIN)), max(2, round(w / _BLOB_GRAIN)))
    field = F.interpolate(uniform((b, 1, *cells), -1.0, 1.0, x, generator), size=(h, w), mode="bicubic",
                          align_corners=False)
    field = (field - field.mean((2, 3), keepdim=True)) / field.std((2, 3), keepdim=True).clamp_min(1e-6)
    cy = uniform((b, 1, 1, 1), 0.0, float(h), x, generator)
    cx = uniform((b, 1, 1, 1), 0.0, float(w), x, generator)
    ys, xs = _grid(h, w, x)
    bowl = ((ys - cy) ** 2 + (xs - cx) ** 2) / (h * w * area / math.pi)
    level = (_BLOB_ROUGHNESS * field - bowl).flatten(1)
    keep = (area.flatten() * h * w).round().long().clamp(4, h * w)  # pixels inside the blob
    cut = level.sort(dim=1, descending=True).values.gather(1, (keep - 1).unsqueeze(1))
    return (level >= cut).to(x.dtype).view(b, 1, h, w)


def _stroke(b: int, h: int, w: int, x: torch.Tensor, generator) -> torch.Tensor:
    size = torch.tensor([h, w], device=x.device, dtype=x.dtype)
    start = uniform((b, 1, 2), 0.0, 1.0, x, generator) * size
    end = uniform((b, 1, 2), 0.0, 1.0, x, generator) * size
    bend = uniform((b, 1, 2), -1.0, 1.0, x, generator) * _STROKE_BEND * min(h, w) * math.sqrt(3)
    control = (start + end) / 2 + bend
    t = torch.linspace(0, 1, _STROKE_POINTS, device=x.device, dtype=x.dtype).view(1, -1, 1)
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end  # [B, P, 2]
    ys, xs = _grid(h, w, x)
    pixels = torch.stack(torch.broadcast_tensors(ys[0, 0], xs[0, 0]), dim=-1).view(1, h * w, 1, 2)
    distance = (pixels - points.unsqueeze(1)).norm(dim=-1).amin(dim=-1).view(b, 1, h, w)
    width = uniform((b, 1, 1, 1), *_STROKE_WIDTH, x, generator) * math.sqrt(min(h, w) / 64)
    return (distance <= width / 2).to(x.dtype)


def _rectangle(b: int, h: int, w: int, x: torch.Tensor, generator) -> torch.Tensor:
    rh = (uniform((b,), *_RECT_SIDE, x, generator) * h).round().clamp_min(1)
    rw = (uniform((b,), *_RECT_SIDE, x, generator) * w).round().clamp_min(1)
    top = (uniform((b,), 0.0, 1.0, x, generator) * (h - rh + 1)).floor()
    left = (uniform((b,), 0.0, 1.0, x, generator) * (w - rw + 1)).floor()
    ys, xs = _grid(h, w, x)
    inside_y = (ys >= top.view(b, 1, 1, 1)) & (ys < (top + rh).view(b, 1, 1, 1))
    inside_x = (xs >= left.view(b, 1, 1, 1)) & (xs < (left + rw).view(b, 1, 1, 1))
    return (inside_y & inside_x).to(x.dtype)


_SHAPES = {"blob": _blob, "stroke": _stroke, "rectangle": _rectangle}


# --- fills: [B, C, H, W], blended in under the mask ------------------------------------------------------
def _shade(x: torch.Tensor, generator) -> torch.Tensor:
    b, c = x.shape[:2]
    amount = uniform((b, 1, 1, 1), *_SHADE, x, generator)
    if c > 1:
        amount = (amount * (1 + uniform((b, c, 1, 1), -_TINT, _TINT, x, generator))).clamp(0, 1)
    lighter = uniform((b, 1, 1, 1), 0.0, 1.0, x, generator) < 0.5
    return torch.where(lighter, x + amount * (1 - x), x * (1 - amount))


def _transplant(x: torch.Tensor, generator) -> torch.Tensor:
    b, _, h, w = x.shape
    donor = torch.roll(x, shifts=1, dims=0) if b > 1 else x  # another image of the batch
    dy, dx = (int(v) for v in randint(2, 0, max(h, w), x, generator).tolist())
    donor = torch.roll(donor, shifts=(dy % h, dx % w), dims=(2, 3))
    mirror = uniform((b, 1, 1, 1), 0.0, 1.0, x, generator) < 0.5
    return torch.where(mirror, donor.flip(-1), donor.flip(-2))


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    std = uniform((x.shape[0], 1, 1, 1), *_NOISE_STD, x, generator)
    return x + std * normal(tuple(x.shape), x, generator)


def _smooth(x: torch.Tensor, generator) -> torch.Tensor:
    b = x.shape[0]
    local = F.avg_pool2d(x, 7, 1, 3, count_include_pad=False)
    flat = x.mean((2, 3), keepdim=True) + uniform((b, 1, 1, 1), -_FLAT_SPREAD, _FLAT_SPREAD, x, generator)
    use_local = uniform((b, 1, 1, 1), 0.0, 1.0, x, generator) < 0.5
    return torch.where(use_local, local, flat.expand_as(x))


_FILLS = {"shade": _shade, "transplant": _transplant, "noise": _noise, "smooth": _smooth}
