"""The paper's pseudo-anomaly filter: pseudo-anomalies that still look normal are drawn again.

A Gaussian is fitted to pretrained ImageNet features (EfficientNet-Lite0's last block, averaged
over space) of the normal training images; a candidate pseudo-anomaly is accepted when its
Mahalanobis distance exceeds the ``quantile`` of the training images' own distances. The
reference code's rule (log-likelihood above the 99th percentile of the training images' is
rejected, up to five draws) is quantile 0.01 with 4 redraws. The covariance is Ledoit-Wolf
shrunk (scikit-learn): a few hundred images are too few for a full 320-d covariance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from sklearn.covariance import LedoitWolf
from torch.nn import functional as F

from robustad.errors import DataError
from robustad.models.efficientnet_lite import BLOCKS
from robustad.models.pretrained import load_lite0_trunk

__all__ = ["PseudoAnomalyFilter"]


class PseudoAnomalyFilter:
    """Accepts images that a Gaussian of the normal images' pretrained features finds unlikely.

    >>> accept = PseudoAnomalyFilter(quantile=0.5).fit(normal_images)
    >>> keep = accept(candidates)                       # bool per candidate
    """

    def __init__(self, quantile: float, size: int | None = None, batch_size: int = 64):
        self.quantile = quantile
        self.size = size
        self.batch_size = batch_size
        self.trunk = load_lite0_trunk([BLOCKS - 1]).eval()
        self.trunk.requires_grad_(False)
        self.mean: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None
        self.threshold: float | None = None

    def to(self, device: torch.device | str) -> "PseudoAnomalyFilter":
        self.trunk.to(device)
        if self.mean is not None:
            self.mean, self.precision = self.mean.to(device), self.precision.to(device)
        return self

    @torch.no_grad()
    def features(self, x: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """[N, 320] float64 features of images in [0, 1] (each chunk of batch_size first through
        `transform`, when given: the whole set is never transformed at once)."""
        device = next(self.trunk.parameters()).device
        out = []
        for chunk in x.split(self.batch_size):
            chunk = chunk.to(device=device, dtype=torch.float32)
            if transform is not None:
                chunk = transform(chunk)
            if self.size is not None and tuple(chunk.shape[-2:]) != (self.size, self.size):
                chunk = F.interpolate(chunk, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                      antialias=True)
            out.append(self.trunk(chunk)[-1].mean(dim=(2, 3)).double())
        return torch.cat(out)

    def fit(self, normals: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
            passes: int = 1) -> "PseudoAnomalyFilter":
        """Fit the Gaussian to `passes` x N feature vectors: each pass takes every normal image
        through `transform` (e.g. a random view) first, when given."""
        if normals.shape[0] < 2:
            raise DataError(f"the pseudo-anomaly filter needs at least 2 normal images, got {normals.shape[0]}")
        feats = torch.cat([self.features(normals, transform) for _ in range(passes)])
        shrunk = LedoitWolf().fit(feats.cpu().numpy())
        self.mean = torch.from_numpy(shrunk.location_).to(feats.device)
        self.precision = torch.from_numpy(shrunk.precision_).to(feats.device)
        self.threshold = float(torch.quantile(self._distance(feats), self.quantile))
        return self

    def _distance(self, feats: torch.Tensor) -> torch.Tensor:
        diff = feats - self.mean
        return ((diff @ self.precision) * diff).sum(1).clamp_min(0).sqrt()

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of each image's features to the normal images' Gaussian."""
        if self.threshold is None:
            raise RuntimeError("fit the filter on normal images first")
        return self._distance(self.features(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.distances(x) > self.threshold).to(x.device)

    def summary(self, counts: Counter) -> dict:
        """What the filter did, from redraw_rejected's tallies: its threshold and, over the candidates
        it judged, the share rejected at the first draw and the share kept though every draw was rejected."""
        n = max(counts["candidates"], 1)
        return {"quantile": self.quantile, "threshold": self.threshold, "candidates": counts["candidates"],
                "rejected_first": counts["rejected_first"] / n, "kept_rejected": counts["kept_rejected"] / n}
