"""Detectors with known flaws, for checking that an evaluation catches them.

- PixelKNN: nearest-neighbour distance in pixel space. No training, differentiable, and not
  robust at all: a reference point that every attack must break.
- GradientMasked: wraps a detector and quantises its input to 1/levels steps first. Scores of
  images already on that grid are unchanged, but the input gradient is zero almost everywhere,
  so gradient attacks stall while the detector is exactly as vulnerable as before. Black-box
  attacks, transfer and large eps reveal it; the sanity checks must flag it.
"""

from __future__ import annotations

import torch
from torch import nn


class PixelKNN:
    """score(x) = mean squared pixel distance to the nearest training image (higher = more anomalous)."""

    def __init__(self, max_bank: int = 500):
        self.max_bank = max_bank
        self.bank: torch.Tensor | None = None
        self.score_center_, self.score_scale_ = 0.0, 1.0
        self.threshold_ = float("nan")

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def fit(self, normal_images: torch.Tensor) -> "PixelKNN":
        x = normal_images.float()
        holdout = max(1, x.shape[0] // 10)
        self.bank = x[holdout:][: self.max_bank].flatten(1)
        scores = self.score(x[:holdout])
        self.score_center_ = float(scores.median())
        self.score_scale_ = float(scores.std()) if holdout > 1 and scores.std() > 0 else 1.0
        self.threshold_ = float(torch.quantile(scores, 0.95))
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x.flatten(1).float(), self.bank) ** 2 / self.bank.shape[1]
        return d.amin(dim=1)


class _Quantize(torch.autograd.Function):
    """Rounding with an explicit zero gradient (what makes the canary masked)."""

    @staticmethod
    def forward(ctx, x, levels):
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad), None


class GradientMasked:
    """inner.score(round(x * levels) / levels): same scores on the grid, zero input gradients."""

    def __init__(self, inner, levels: int = 255):
        self.inner = inner
        self.levels = levels
        for name in ("score_center_", "score_scale_", "threshold_"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    @property
    def device(self) -> torch.device:
        return getattr(self.inner, "device", torch.device("cpu"))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.score(_Quantize.apply(x, self.levels))

    # no `scorer`: attacks see the detector only through score(), as a user's wrapper would be seen
    scorer: nn.Module | None = None
