"""Reference detectors with nothing learned: what every learned detector must beat.

- ``pixel-knn``: the L2 distance from an image to its nearest training image, on the pixels
  (optionally average-pooled by ``downsample`` first). It is 1-Lipschitz in L2, so an L-inf
  attack of size eps moves its score by at most eps * sqrt(number of pixels): robust by
  construction, and often hard to beat under attack on small images.
- ``pixel-patch-knn``: the same on local patches (patch_size x patch_size pixels every
  patch_stride): each patch's L2 distance to its nearest training patch, the largest over the
  image. A small defect in a large image counts, the score is just as Lipschitz (per patch), and
  it gives anomaly maps. The bank is a seeded random subset of bank_size training patches.
- ``image-stats``: the per-channel mean and standard deviation of an image, scored by their
  Mahalanobis distance to those of the training images. It sees brightness and contrast only.

Both train in seconds, have the API and checkpoint layout of every detector, and are attacked
like any other (their scores are differentiable).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from robustad.errors import InputError
from robustad.methods.base import AnomalyMaps, BaseDetector
from robustad.methods.baseline_common import fit_images
from robustad.methods.checkpoint import SavesScorer, calibrate, fit_record
from robustad.methods.patch_bank import PatchBankScore, upsample_map
from robustad.methods.reference.config import ReferenceConfig
from robustad.provenance import images_digest
from robustad.runtime import resolve_device

__all__ = ["ImageStats", "PixelKNN", "PixelPatchKNN"]


class PixelDistance(PatchBankScore):
    """x -> mean L2 distance to the k nearest training images (after average pooling).

    A patch bank whose one "patch" is the whole image, so the kNN attacks of the suite cover it.
    """

    def __init__(self, downsample: int, k: int, chunk_size: int, bank_dim: int = 0, density_k: int = 0):
        super().__init__(k, chunk_size, bank_dim, density_k=density_k)
        self.downsample = downsample

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (F.avg_pool2d(x, self.downsample, ceil_mode=True) if self.downsample > 1 else x).flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x).unsqueeze(1)


class PixelPatchDistance(PatchBankScore):
    """x -> the largest, over the image's patches, of a raw-pixel patch's L2 distance to its nearest
    training patch; anomaly_map gives those distances as a map at the input's resolution."""

    def __init__(self, patch_size: int, stride: int, k: int, chunk_size: int, map_sigma: float, bank_dim: int = 0,
                 density_k: int = 0):
        super().__init__(k, chunk_size, bank_dim, density_k=density_k)
        self.patch_size, self.stride, self.map_sigma = patch_size, stride, map_sigma

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        # replicate the last rows/columns so that the patches reach the bottom and right edges
        h, w = x.shape[-2:]
        p, s = self.patch_size, self.stride
        if h < p or w < p:
            raise InputError(f"pixel-patch-knn: images of {h}x{w} are smaller than patch_size {p}; "
                             f"set patch_size to at most {min(h, w)} (--set patch_size=...)")
        pad_h, pad_w = (-(h - p)) % s, (-(w - p)) % s
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x

    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        h, w = self._padded(x).shape[-2:]
        return (h - self.patch_size) // self.stride + 1, (w - self.patch_size) // self.stride + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.unfold(self._padded(x), self.patch_size, stride=self.stride).transpose(1, 2)

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        dist = self.patch_distances(self.features(x)).view(x.shape[0], 1, *self.grid(x))
        return upsample_map(dist, x.shape[-2:], self.map_sigma)


class StatsDistance(nn.Module):
    """x -> Mahalanobis distance of (per-channel mean, per-channel std) to the training images'."""

    smooth = True  # differentiable everywhere: plain PGD on it is already the adaptive attack

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(2 * channels))
        self.register_buffer("precision", torch.eye(2 * channels))

    @staticmethod
    def statistics(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return torch.cat([flat.mean(dim=2), (flat.var(dim=2, unbiased=False) + 1e-12).sqrt()], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.statistics(x) - self.mean
        return ((d @ self.precision) * d).sum(dim=1).clamp_min(0).sqrt()


class _ReferenceDetector(SavesScorer, BaseDetector):
    """Fit = remember the training images (or their statistics); shared by both reference detectors."""

    config_class = ReferenceConfig
    device_field = "device"

    def __init__(self, config: ReferenceConfig | None = None, overrides: dict | list | None = None, **kwargs: Any):
        self._configure(config, overrides, kwargs)
        self.scorer = None
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def from_preset(cls, name: str, overrides: dict | list | None = None, **kwargs: Any):
        return cls(ReferenceConfig.from_preset(name), overrides=overrides, **kwargs)

    def _make_scorer(self, channels: int, bank_shape: tuple[int, ...]) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _fill(self, train_x: torch.Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None):
        """Remember the normal images (nothing is trained) and calibrate the threshold."""
        started = time.perf_counter()
        x, train_x, holdout_x = fit_images(self, normal_images, self.config.score.holdout_fraction,
                                           self.config.seed + 1)
        self.scorer = self._make_scorer(x.shape[1], (0, 0)).to(resolve_device(self.config.device)).eval()
        self._fill(train_x.to(self.device))
        calibrate(self, holdout_x, self.config.score.target_fpr)
        self.fit_info_ = fit_record(train_x, holdout_x, images_digest(x), started)
        return self

    @classmethod
    def _rebuild(cls, config, meta, tensors, in_channels, image_size, path):
        detector = cls(config)
        bank = tensors.get("bank")
        detector.scorer = detector._make_scorer(in_channels, tuple(bank.shape) if bank is not None else (0, 0))
        return detector


class PixelKNN(_ReferenceDetector):
    """L2 distance to the nearest training image on (optionally average-pooled) pixels."""

    name = "pixel-knn"

    def _make_scorer(self, channels: int, bank_shape: tuple[int, ...]) -> nn.Module:
        c = self.config
        return PixelDistance(c.downsample, c.k, c.chunk_size, bank_shape[1] if len(bank_shape) == 2 else 0,
                             density_k=c.density_k)

    def _fill(self, train_x: torch.Tensor) -> None:
        self.scorer.set_bank(self.scorer.embed(train_x))


class PixelPatchKNN(AnomalyMaps, _ReferenceDetector):
    """Largest L2 distance of an image's raw-pixel patches to their nearest training patches."""

    name = "pixel-patch-knn"

    def _make_scorer(self, channels: int, bank_shape: tuple[int, ...]) -> nn.Module:
        c = self.config
        return PixelPatchDistance(c.patch_size, c.patch_stride, c.k, c.chunk_size, c.map_sigma,
                                  bank_shape[1] if len(bank_shape) == 2 else 0, density_k=c.density_k)

    def _fill(self, train_x: torch.Tensor) -> None:
        c = self.config
        info = self.scorer.fill_bank(train_x, batch_size=c.score.batch_size, coreset_fraction=1.0,
                                     bank_size=c.bank_size, max_candidates=c.bank_size, projection_dim=0, seed=c.seed)
        self.bank_info_ = info


class ImageStats(_ReferenceDetector):
    """Mahalanobis distance of an image's per-channel mean and standard deviation."""

    name = "image-stats"

    def _make_scorer(self, channels: int, bank_shape: tuple[int, ...]) -> nn.Module:
        return StatsDistance(channels)

    def _fill(self, train_x: torch.Tensor) -> None:
        stats = StatsDistance.statistics(train_x).double()
        covariance = torch.cov(stats.T).reshape(stats.shape[1], stats.shape[1])
        # a small ridge keeps a constant statistic (a flat channel) from making the inverse blow up
        ridge = 1e-6 + 1e-3 * covariance.diagonal().mean()
        precision = torch.linalg.inv(covariance + ridge * torch.eye(stats.shape[1], dtype=torch.float64))
        self.scorer.mean = stats.mean(dim=0).float()
        self.scorer.precision = precision.float()
