"""The reference detectors' configuration: patch and bank sizes, downsampling, and what they read from a preset."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from robustad.config import Budget, CalibrationConfig, ConfigMixin, EvaluationConfig
from robustad.errors import ConfigError
from robustad.methods.baseline_common import check_shared_sections

__all__ = ["ReferenceConfig"]


@dataclass
class ReferenceConfig(ConfigMixin):
    image_size: int | None = None  # resize inputs to this size; None = keep the data's size
    downsample: int = 1  # pixel-knn: average-pool the image by this factor before comparing
    k: int = 1  # pixel-knn: mean distance to the k nearest training images
    chunk_size: int = 1024  # pixel-knn: training images compared at once (bounds memory)
    patch_size: int = 8  # pixel-patch-knn: side of a patch, in pixels (after any resize)
    patch_stride: int = 4  # pixel-patch-knn: pixels between neighbouring patches
    bank_size: int = 10000  # pixel-patch-knn: training patches kept (a seeded random subset)
    map_sigma: float = 2.0  # pixel-patch-knn: Gaussian blur of anomaly maps, pixels at a 64 px side
    density_k: int = 0  # divide each bank entry's distances by its distance to its density_k-th nearest entry; 0 = off
    seed: int = 0  # the hold-out split
    device: str = "auto"
    score: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "ReferenceConfig":
        if self.downsample < 1:
            raise ConfigError(f"downsample must be >= 1 (1 = the pixels as they are), got {self.downsample}")
        if self.k < 1 or self.chunk_size < 1:
            raise ConfigError(f"k and chunk_size must be >= 1, got {self.k} and {self.chunk_size}")
        if not (1 <= self.patch_stride <= self.patch_size <= 256):
            raise ConfigError(f"need 1 <= patch_stride <= patch_size <= 256, got patch_stride {self.patch_stride} "
                              f"and patch_size {self.patch_size}")
        if not 0 <= self.density_k <= 1000:
            raise ConfigError(f"density_k must be 0 (plain distances) to 1000, got {self.density_k}")
        if not 1 <= self.bank_size <= 10_000_000:
            raise ConfigError(f"bank_size must be between 1 and 10,000,000 patches, got {self.bank_size}")
        if not (math.isfinite(self.map_sigma) and self.map_sigma >= 0):
            raise ConfigError(f"map_sigma must be a finite number >= 0, got {self.map_sigma}")
        check_shared_sections(self)
        return self

    @classmethod
    def from_preset(cls, name: str) -> "ReferenceConfig":
        """The image size, seed, threshold settings and test budget of a preset."""
        budget = Budget.from_preset(name)
        return cls(image_size=budget.image_size, seed=budget.train.seed, device=budget.train.device,
                   score=budget.calibration(), evaluation=budget.evaluation).validate()
