"""pixel-pca's configuration: how much of the training images' variance the subspace keeps, and
what it reads from a preset."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from robustad.config import Budget, CalibrationConfig, ConfigMixin, EvaluationConfig
from robustad.errors import ConfigError
from robustad.methods.baseline_common import check_shared_sections

__all__ = ["PCAConfig"]


@dataclass
class PCAConfig(ConfigMixin):
    image_size: int | None = None  # resize inputs to this size; None = keep the data's size
    downsample: int = 1  # average-pool the image by this factor first
    variance: float = 0.95  # keep the fewest principal directions that explain this share of the variance
    max_components: int = 512  # and never more than this many
    seed: int = 0  # the hold-out split
    device: str = "auto"
    score: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "PCAConfig":
        if self.downsample < 1:
            raise ConfigError(f"downsample must be >= 1 (1 = the pixels as they are), got {self.downsample}")
        if not (math.isfinite(self.variance) and 0 < self.variance < 1):
            raise ConfigError(f"variance is the share of the training variance the subspace keeps, between 0 and 1 "
                              f"(e.g. 0.95); got {self.variance}")
        if not 1 <= self.max_components <= 4096:
            raise ConfigError(f"max_components must be from 1 to 4096, got {self.max_components}")
        check_shared_sections(self)
        return self

    @classmethod
    def from_preset(cls, name: str) -> "PCAConfig":
        """The image size, seed, threshold settings and test budget of a preset."""
        budget = Budget.from_preset(name)
        return cls(image_size=budget.image_size, seed=budget.train.seed, device=budget.train.device,
                   score=budget.calibration(), evaluation=budget.evaluation).validate()
