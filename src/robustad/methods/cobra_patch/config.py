"""COBRA-patch's configuration: the backbone, the loss, the adversaries, the defects, the score."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from robustad.config import Budget, CalibrationConfig, ConfigMixin, EvaluationConfig, TrainConfig, parse_eps
from robustad.errors import ConfigError
from robustad.methods.baseline_common import check_evaluation_config, check_score_config
from robustad.methods.patch_bank import AGGREGATES
from robustad.models.efficientnet_lite import BLOCKS
from robustad.transforms.defects import DEFECT_FILLS, DEFECT_SHAPES

__all__ = ["PatchCobraConfig"]


@dataclass
class PatchBackboneConfig:
    pretrained: bool = True  # start from EfficientNet-Lite0's ImageNet weights (robustad.models.pretrained)
    taps: list[int] = field(default_factory=lambda: [2, 4])  # blocks whose outputs are the patch features
    input_size: int | None = None  # the side the network sees (resized inside it); None = the image's own
    patch_pool: int = 3  # neighbourhood averaged into each patch feature (PatchCore's local aggregation)


@dataclass
class PatchLossConfig:
    anchor: float = 1.0  # keep clean features near the pretrained ones (squared distance, relative)
    positive: float = 4.0  # positive pairs: an adversarial copy's patches stay near the clean ones
    opposite: float = 1.0  # opposite pairs: a defect's patches stay at least `margin` from the clean ones
    margin: float = 1.0  # in units of the pretrained patch features' mean squared norm


@dataclass
class PatchAdversarialConfig:
    enabled: bool = True
    eps: Any = "2/255"
    steps: int = 3
    step_size: Any = None  # None -> 2.5 * eps / steps
    ramp: float = 0.3  # eps grows linearly from 0 over this fraction of the training steps


@dataclass
class PatchDefectConfig:
    shapes: list[str] = field(default_factory=lambda: list(DEFECT_SHAPES))
    fills: list[str] = field(default_factory=lambda: list(DEFECT_FILLS))
    flips: bool = True  # training images flipped at random (surfaces look the same mirrored)


@dataclass
class PatchScoreConfig(CalibrationConfig):
    aggregate: str = "max"  # per image: the largest patch distance (max) or their mean
    k: int = 1  # nearest bank entries averaged per patch
    coreset_fraction: float = 0.1  # share of the training patches kept in the bank
    bank_size: int | None = 10000
    max_candidates: int | None = 50000  # patches the coreset chooses from (seeded random subset)
    projection_dim: int = 128  # random projection that speeds up coreset selection; 0 = none
    chunk_size: int = 4096
    map_sigma: float = 4.0  # Gaussian blur of anomaly maps, in pixels at a 64 px side (scaled)
    density_k: int = 0  # divide each bank entry's distances by its distance to its density_k-th nearest entry; 0 = off


def _patch_train_defaults() -> TrainConfig:
    # Adam with no warm-up: fine-tuning pretrained weights for a few hundred steps
    return TrainConfig(epochs=3, batch_size=32, steps_per_epoch=40, optimizer="adam", lr=1e-3,
                       weight_decay=0.0, warmup_epochs=0)


@dataclass
class PatchCobraConfig(ConfigMixin):
    image_size: int | None = None  # resize inputs to this size; None = keep the data's size
    backbone: PatchBackboneConfig = field(default_factory=PatchBackboneConfig)
    loss: PatchLossConfig = field(default_factory=PatchLossConfig)
    adversarial: PatchAdversarialConfig = field(default_factory=PatchAdversarialConfig)
    defects: PatchDefectConfig = field(default_factory=PatchDefectConfig)
    train: TrainConfig = field(default_factory=_patch_train_defaults)
    score: PatchScoreConfig = field(default_factory=PatchScoreConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "PatchCobraConfig":
        b = self.backbone
        if not b.taps or sorted(set(b.taps)) != list(b.taps) or not all(0 <= t < BLOCKS for t in b.taps):
            raise ConfigError(f"backbone.taps must be increasing block numbers in 0..{BLOCKS - 1}, got {b.taps!r}")
        if b.input_size is not None and not 8 <= b.input_size <= 1024:
            raise ConfigError(f"backbone.input_size must be 8..1024 pixels or null, got {b.input_size}")
        if b.patch_pool < 1 or b.patch_pool % 2 == 0:
            raise ConfigError(f"backbone.patch_pool must be an odd number >= 1, got {b.patch_pool}")
        for key in ("anchor", "positive", "opposite", "margin"):
            value = getattr(self.loss, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"loss.{key} must be a finite number >= 0, got {value}")
        a = self.adversarial
        a.eps = parse_eps(a.eps, "adversarial.eps")
        if a.step_size is not None:
            a.step_size = parse_eps(a.step_size, "adversarial.step_size")
        if a.steps < 1:
            raise ConfigError(f"adversarial.steps must be >= 1, got {a.steps}")
        if not 0.0 <= a.ramp <= 1.0:
            raise ConfigError(f"adversarial.ramp must be in [0, 1], got {a.ramp}")
        for kind, names, valid in (("shapes", self.defects.shapes, DEFECT_SHAPES), ("fills", self.defects.fills, DEFECT_FILLS)):
            if not names or any(n not in valid for n in names) or len(set(names)) != len(names):
                raise ConfigError(f"defects.{kind} must list distinct names from {', '.join(valid)}; got {names!r}")
        self.train.validate()
        s = self.score
        check_score_config(s, self.image_size)
        if s.aggregate not in AGGREGATES:
            raise ConfigError(f"score.aggregate must be one of {', '.join(AGGREGATES)}, got {s.aggregate!r}")
        if s.k < 1:
            raise ConfigError(f"score.k must be >= 1, got {s.k}")
        if not 0 <= s.density_k <= 1000:
            raise ConfigError(f"score.density_k must be 0 (plain distances) to 1000, got {s.density_k}")
        if isinstance(s.coreset_fraction, bool) or not 0.0 < s.coreset_fraction <= 1.0:
            raise ConfigError(f"score.coreset_fraction must be in (0, 1], got {s.coreset_fraction}")
        for key in ("bank_size", "max_candidates"):
            value = getattr(s, key)
            if value is not None and value < 1:
                raise ConfigError(f"score.{key} must be >= 1 or null, got {value}")
        if s.projection_dim < 0 or s.chunk_size < 1:
            raise ConfigError(f"score.projection_dim must be >= 0 and score.chunk_size >= 1, got "
                              f"{s.projection_dim}, {s.chunk_size}")
        if not (math.isfinite(s.map_sigma) and s.map_sigma >= 0):
            raise ConfigError(f"score.map_sigma must be a finite number >= 0, got {s.map_sigma}")
        check_evaluation_config(self.evaluation)
        return self

    @classmethod
    def from_preset(cls, name: str) -> "PatchCobraConfig":
        """COBRA-patch on a data set's preset: its image size, seed, device, threshold settings, test
        budget, and that budget for training too. Everything else is this method's own default."""
        budget = Budget.from_preset(name)
        config = cls()
        config.image_size = budget.image_size
        config.train.seed, config.train.device = budget.train.seed, budget.train.device
        config.score.holdout_fraction = budget.score.holdout_fraction
        config.score.target_fpr = budget.score.target_fpr
        config.evaluation = budget.evaluation
        config.adversarial.eps = budget.evaluation.eps
        return config.validate()
