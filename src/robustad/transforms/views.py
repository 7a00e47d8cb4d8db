"""Light augmentations that make contrastive "views" of an image.

kornia.augmentation modules draw from the global RNG and cannot take a
``torch.Generator``, so parameters are sampled here and applied with kornia's
functional ops. Input and output: float [B, C, H, W] in [0, 1], C in {1, 3};
per-sample parameters, no loop over images, differentiable in ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import kornia
import torch

from robustad.errors import ConfigError
from robustad.transforms._common import bernoulli, check_images, color_jitter, sample_jitter, uniform

__all__ = ["LightViews", "ViewConfig"]

_LOG_RATIO = (math.log(3.0 / 4.0), math.log(4.0 / 3.0))


@dataclass
class ViewConfig:
    """Parameters of :class:`LightViews`.

    crop_scale: range of the crop's area as a fraction of the image area.
    jitter_strength: s; brightness, contrast and saturation factors are drawn
        from U(1 - s, 1 + s) and the hue shift from U(-s/4, s/4) turns (s = 0.4
        gives SimCLR's 0.4/0.4/0.4/0.1; hue is rotated in YIQ space, see
        :func:`robustad.transforms._common.rotate_hue`).
    jitter_p: probability that an image is colour-jittered.
    grayscale_p: probability that an RGB image is turned grey (no-op for C=1).
    flip: random horizontal flips with probability 0.5 (off by default
        because a flip can change what a digit means).
    """

    crop_scale: tuple[float, float] = (0.54, 1.0)
    jitter_strength: float = 0.4
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    flip: bool = False

    def __post_init__(self) -> None:
        cs = self.crop_scale
        if isinstance(cs, str) or not isinstance(cs, Sequence) or len(cs) != 2:
            raise ConfigError(f"crop_scale must be a pair (min, max), got {cs!r}.")
        try:
            lo, hi = float(cs[0]), float(cs[1])
        except (TypeError, ValueError):
            raise ConfigError(f"crop_scale must hold two numbers, got {cs!r}.") from None
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"crop_scale must satisfy 0 < min <= max <= 1, got {cs!r}.")
        self.crop_scale = (lo, hi)
        for field in ("jitter_strength", "jitter_p", "grayscale_p"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{field} must be a number, got {value!r}.")
            setattr(self, field, float(value))
        if self.jitter_strength < 0:
            raise ConfigError(f"jitter_strength must be >= 0, got {self.jitter_strength}.")
        for field in ("jitter_p", "grayscale_p"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ConfigError(f"{field} must be a probability in [0, 1], got {getattr(self, field)}.")
        if not isinstance(self.flip, bool):
            raise ConfigError(f"flip must be true or false, got {self.flip!r}.")


class LightViews:
    """Random resized crop, optional flip, colour jitter and greyscale, per sample.

    The crop follows torchvision's RandomResizedCrop (area fraction from
    ``crop_scale``, aspect ratio log-uniform in [3/4, 4/3]) except that a crop
    that would not fit is clamped to the image instead of re-drawn, so the
    whole batch is sampled in one go: an overflowing side is cut to the image
    and the other side lengthened to keep the drawn area. It is resized back to H x W bilinearly.
    Jitter order is fixed: brightness, contrast, saturation, hue.
    """

    def __init__(self, config: ViewConfig | None = None):
        if config is None:
            config = ViewConfig()
        if not isinstance(config, ViewConfig):
            raise ConfigError(f"LightViews needs a ViewConfig, got {type(config).__name__}.")
        self.config = config

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(x)
        cfg = self.config
        b, c, h, w = x.shape

        # Every parameter is drawn every call, whatever the config and C, so a
        # seed gives the same stream of decisions across settings.
        area = uniform(b, *cfg.crop_scale, x, generator) * (h * w)
        ratio = torch.exp(uniform(b, *_LOG_RATIO, x, generator))
        # A side that would overflow is cut to the image and the other side
        # grown to keep the drawn area (so crop_scale=(1, 1) is the full image).
        cw = torch.sqrt(area * ratio).clamp(max=w)
        ch = (area / cw).clamp(1.0, h)
        cw = (area / ch).clamp(1.0, w)
        x0 = uniform(b, 0.0, 1.0, x, generator) * (w - cw)
        y0 = uniform(b, 0.0, 1.0, x, generator) * (h - ch)
        flip = bernoulli(b, 0.5, x, generator) & cfg.flip
        do_jitter = bernoulli(b, cfg.jitter_p, x, generator)
        do_gray = bernoulli(b, cfg.grayscale_p, x, generator)
        bf, cf, sf, hf = sample_jitter(b, cfg.jitter_strength, cfg.jitter_strength / 4.0, x, generator)

        # Box corners are pixel centres (inclusive); swapping left and right
        # makes crop_and_resize mirror the crop, so the flip costs nothing extra.
        left, right = x0, x0 + cw - 1.0
        left, right = torch.where(flip, right, left), torch.where(flip, left, right)
        top, bottom = y0, y0 + ch - 1.0
        boxes = torch.stack(
            [torch.stack([left, top], -1), torch.stack([right, top], -1),
             torch.stack([right, bottom], -1), torch.stack([left, bottom], -1)],
            1,
        )  # [B, 4, 2]
        out = kornia.geometry.transform.crop_and_resize(x, boxes, (h, w), mode="bilinear", align_corners=True)
        out = out.clamp(0.0, 1.0)

        # Images that skip the jitter get neutral factors and are then taken
        # from the un-jittered branch, so they are exactly unchanged.
        one, zero = torch.ones_like(bf), torch.zeros_like(hf)
        jittered = color_jitter(
            out,
            torch.where(do_jitter, bf, one),
            torch.where(do_jitter, cf, one),
            torch.where(do_jitter, sf, one),
            torch.where(do_jitter, hf, zero),
        )
        out = torch.where(do_jitter.view(b, 1, 1, 1), jittered, out)

        if c == 3:
            gray = kornia.color.rgb_to_grayscale(out).expand_as(out)
            out = torch.where(do_gray.view(b, 1, 1, 1), gray, out)
        return out.clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"LightViews({self.config!r})"
