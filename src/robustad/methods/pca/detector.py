"""pixel-pca, a reference detector with nothing learned by gradient: the distance of an image's
pixels from the principal subspace of the training images (the PCA reconstruction error).

score(x) = ||(I - U U^T)(x - mean)||, with U the training images' leading principal directions.
The residual is an orthogonal projection, so the score is 1-Lipschitz in L2: an L-inf attack of
size eps moves it by at most eps * sqrt(number of pixels), as for pixel-knn. Where pixel-knn asks
"is there a training image like this one?", pixel-pca asks "is this image a mix of the training
images' main modes?", which generalises between training images and needs no bank at test time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from robustad.methods.base import BaseDetector
from robustad.methods.baseline_common import fit_images
from robustad.methods.checkpoint import SavesScorer, calibrate, fit_record
from robustad.methods.pca.config import PCAConfig
from robustad.provenance import images_digest
from robustad.runtime import resolve_device

__all__ = ["PixelPCA"]


class SubspaceResidual(nn.Module):
    """x -> L2 norm of the part of pool(x) - mean outside span(basis)."""

    smooth = True  # differentiable everywhere: plain PGD on it is already the adaptive attack

    def __init__(self, downsample: int, dim: int = 0, components: int = 0):
        super().__init__()
        self.downsample = downsample
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(dim, components))  # orthonormal columns

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (F.avg_pool2d(x, self.downsample, ceil_mode=True) if self.downsample > 1 else x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = self.embed(x) - self.mean
        residual = centred - (centred @ self.basis) @ self.basis.T
        return residual.norm(dim=1)


class PixelPCA(SavesScorer, BaseDetector):
    """Distance of an image's (optionally average-pooled) pixels from the training images' principal subspace."""

    name = "pixel-pca"
    config_class = PCAConfig
    device_field = "device"

    def __init__(self, config: PCAConfig | None = None, overrides: dict | list | None = None, **kwargs: Any):
        self._configure(config, overrides, kwargs)
        self.scorer: SubspaceResidual | None = None
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def from_preset(cls, name: str, overrides: dict | list | None = None, **kwargs: Any) -> "PixelPCA":
        return cls(PCAConfig.from_preset(name), overrides=overrides, **kwargs)

    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None) -> "PixelPCA":
        """Find the principal subspace of the normal images (an SVD, no training loop) and calibrate."""
        started = time.perf_counter()
        x, train_x, holdout_x = fit_images(self, normal_images, self.config.score.holdout_fraction,
                                           self.config.seed + 1)
        scorer = SubspaceResidual(self.config.downsample)
        z = scorer.embed(train_x).double()
        mean = z.mean(dim=0)
        _, singular, vt = torch.linalg.svd(z - mean, full_matrices=False)
        share = (singular**2).cumsum(0) / (singular**2).sum().clamp_min(1e-30)
        wanted = int((share < self.config.variance).sum()) + 1  # the fewest directions reaching the share
        keep = max(1, min(wanted, self.config.max_components, vt.shape[0]))
        scorer.mean, scorer.basis = mean.float(), vt[:keep].T.float().contiguous()
        self.scorer = scorer.to(resolve_device(self.config.device)).eval()
        calibrate(self, holdout_x, self.config.score.target_fpr)
        self.fit_info_ = fit_record(train_x, holdout_x, images_digest(x), started, num_components=keep,
                                    variance_kept=float(share[keep - 1]))
        return self

    @classmethod
    def _rebuild(cls, config, meta, tensors, in_channels, image_size, path):
        detector = cls(config)
        basis = tensors.get("basis", torch.zeros(0, 0))
        detector.scorer = SubspaceResidual(config.downsample, basis.shape[0], basis.shape[1])
        return detector
