"""COBRA's configuration: the network, the views and pseudo-anomalies, the loss, the adversaries and
the score, next to the generic training and evaluation sections (robustad.config)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from robustad.config import (
    MAX_IMAGE_SIZE,
    MAX_MODEL_WIDTH,
    MAX_PROJECTION_DIM,
    MAX_SCORE_VIEWS,
    BackboneConfig,
    CalibrationConfig,
    ConfigMixin,
    EvaluationConfig,
    TrainConfig,
    check_upper_bound,
    parse_eps,
)
from robustad.errors import ConfigError
from robustad.methods.adversarial import GUARD_ACTIONS
from robustad.transforms.pseudo_anomaly import PseudoAnomalySet

MAX_FILTER_REDRAWS = 32  # each redraw is one more pretrained forward pass over the rejected candidates

__all__ = ["AdversarialConfig", "CobraConfig", "FilterConfig", "LossConfig", "ModelConfig", "ScoreConfig", "TransformConfig"]


@dataclass
class ModelConfig(BackboneConfig):
    projection_dim: int = 128


@dataclass
class FilterConfig:
    # The paper's pseudo-anomaly filter (off in the reference code): a random pseudo-anomaly whose
    # pretrained features (EfficientNet-Lite0) lie within the `quantile` of the normal training
    # images' Mahalanobis distances still looks normal and is drawn again, up to `redraws` times.
    # The reference code's rule is quantile 0.01 with 4 redraws. size: side the candidates are
    # resized to for the feature extractor (null = as they are).
    enabled: bool = False
    quantile: float = 0.01
    redraws: int = 4
    size: int | None = None

    def check(self, shift_names: list[str]) -> None:
        if not self.enabled:
            return
        if not (math.isfinite(self.quantile) and 0.0 < self.quantile < 1.0):
            raise ConfigError(f"transforms.filter.quantile must be between 0 and 1, got {self.quantile}")
        if not 0 <= self.redraws <= MAX_FILTER_REDRAWS:
            raise ConfigError(f"transforms.filter.redraws must be from 0 to {MAX_FILTER_REDRAWS}, got {self.redraws}")
        if self.size is not None and not 16 <= self.size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"transforms.filter.size must be from 16 to {MAX_IMAGE_SIZE} pixels, or null to keep "
                              f"the images' size; got {self.size}")
        if all(name == "identity" or name.startswith("rotate") for name in shift_names):
            raise ConfigError("transforms.filter redraws random pseudo-anomalies, and rotations are fixed (a redraw "
                              "gives the same image); add cutpaste, cutout, elastic or cut_permutation to "
                              "transforms.pseudo_anomalies, or set transforms.filter.enabled=false")


@dataclass
class TransformConfig:
    # Hard transformations that make pseudo-anomalies; shift 0 is always the identity.
    pseudo_anomalies: list[str] = field(default_factory=lambda: ["rotation"])
    crop_scale: tuple[float, float] = (0.54, 1.0)
    jitter_strength: float = 0.4
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    flip: bool = False
    filter: FilterConfig = field(default_factory=FilterConfig)


@dataclass
class LossConfig:
    contrastive: str = "cobra"  # cobra | cl | opposite | supcon | none
    classification: bool = True  # add L_CLS (cross-entropy of the shift head H)
    temperature: float = 0.5
    opposite_weight: float = 1.0


@dataclass
class AdversarialConfig:
    enabled: bool = True
    mode: str = "paper"  # "paper": two adversaries (contrastive loss, shift head); "reference": three; "joint": one against both
    eps: Any = "4/255"
    steps: int = 10
    step_size: Any = None  # None -> 2.5 * eps / steps (1.25 * eps for steps=1: FGSM-RS)
    random_start: bool = True
    # Catastrophic-overfitting guard, for few-step training (steps=1): after every epoch, the shift
    # head's accuracy under PGD-guard_steps on guard_images held-out images and their shifts. A fall
    # of more than guard_drop below its best discards that epoch's updates, then "fallback" crafts
    # the remaining epochs' adversaries with PGD-fallback_steps, or "stop" ends training there.
    guard_steps: int = 0  # 0 = no guard
    guard_images: int = 32
    guard_drop: float = 0.2
    guard_action: str = "fallback"  # fallback | stop
    fallback_steps: int = 5


    def check_guard(self, has_shift_head: bool) -> None:
        if self.guard_steps < 0:
            raise ConfigError(f"adversarial.guard_steps must be >= 0 (0 turns the guard off), got {self.guard_steps}")
        if self.guard_steps == 0:
            return
        if not has_shift_head:
            raise ConfigError("adversarial.guard_steps reads the shift head's robust accuracy, which "
                              "loss.classification=false does not train; turn one of them off")
        if not 1 <= self.guard_images <= 4096:
            raise ConfigError(f"adversarial.guard_images must be from 1 to 4096, got {self.guard_images}")
        if not (math.isfinite(self.guard_drop) and 0 < self.guard_drop < 1):
            raise ConfigError(f"adversarial.guard_drop is a fall in accuracy, between 0 and 1; got {self.guard_drop}")
        if self.guard_action not in GUARD_ACTIONS:
            raise ConfigError(f"adversarial.guard_action must be one of {', '.join(GUARD_ACTIONS)}, "
                              f"got {self.guard_action!r}")
        if self.fallback_steps < 1:
            raise ConfigError(f"adversarial.fallback_steps must be >= 1, got {self.fallback_steps}")


@dataclass
class ScoreConfig(CalibrationConfig):
    views: int = 0  # seeded light views averaged per image; 0 = the image itself
    seed: int = 1234  # fixes the views and random shifts, so score(x) is deterministic
    bank_size: int | None = None  # training images kept in the feature bank; None = all
    # the shifts t_k the score compares under, by name (e.g. [identity, rotate180]); None = all K, as
    # CSI and the reference code do. Each one is a forward pass per image and view.
    shifts: list[str] | None = None


@dataclass
class CobraConfig(ConfigMixin):
    image_size: int | None = None  # resize inputs to this size; None = keep the data's size
    model: ModelConfig = field(default_factory=ModelConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "CobraConfig":
        self.adversarial.eps = parse_eps(self.adversarial.eps, "adversarial.eps")
        self.evaluation.eps = parse_eps(self.evaluation.eps, "evaluation.eps")
        if self.evaluation.steps < 1:
            raise ConfigError(f"evaluation.steps must be >= 1, got {self.evaluation.steps}")
        if self.adversarial.step_size is not None:
            self.adversarial.step_size = parse_eps(self.adversarial.step_size, "adversarial.step_size")
        if self.adversarial.mode not in ("paper", "reference", "joint"):
            raise ConfigError(f"adversarial.mode must be 'paper', 'reference' or 'joint', got {self.adversarial.mode!r}")
        if self.adversarial.steps < 1:
            raise ConfigError(f"adversarial.steps must be >= 1, got {self.adversarial.steps}")
        self.adversarial.check_guard(self.loss.classification)
        if self.model.stem not in ("cifar", "imagenet"):
            raise ConfigError(f"model.stem must be 'cifar' or 'imagenet', got {self.model.stem!r}")
        if self.model.width < 1:
            raise ConfigError(f"model.width must be >= 1, got {self.model.width}")
        check_upper_bound("model.width", self.model.width, MAX_MODEL_WIDTH)
        check_upper_bound("model.projection_dim", self.model.projection_dim, MAX_PROJECTION_DIM)
        check_upper_bound("score.views", self.score.views, MAX_SCORE_VIEWS)
        check_upper_bound("image_size", self.image_size, MAX_IMAGE_SIZE)
        self.train.validate()
        if not 0.0 < self.score.target_fpr < 1.0:
            raise ConfigError(f"score.target_fpr must be in (0, 1), got {self.score.target_fpr}")
        if not 0.0 <= self.score.holdout_fraction < 1.0:
            raise ConfigError(f"score.holdout_fraction must be in [0, 1), got {self.score.holdout_fraction}")
        if self.score.views < 0:
            raise ConfigError(f"score.views must be >= 0, got {self.score.views}")
        if self.score.batch_size < 1:
            raise ConfigError(f"score.batch_size must be >= 1, got {self.score.batch_size}")
        if self.score.bank_size is not None and self.score.bank_size < 1:
            raise ConfigError(f"score.bank_size must be >= 1, or null to keep every training image; "
                              f"got {self.score.bank_size}")
        if self.score.seed < 0:
            raise ConfigError(f"score.seed must be >= 0, got {self.score.seed}")
        self.score_shift_ids()
        self.transforms.filter.check(PseudoAnomalySet(self.transforms.pseudo_anomalies).shift_names)
        if not (math.isfinite(self.loss.temperature) and self.loss.temperature > 0):
            raise ConfigError(f"loss.temperature must be a finite number > 0, got {self.loss.temperature}")
        if not (math.isfinite(self.loss.opposite_weight) and self.loss.opposite_weight >= 0):
            raise ConfigError(f"loss.opposite_weight must be a finite number >= 0, got {self.loss.opposite_weight}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"image_size must be >= 8 pixels, got {self.image_size}")
        return self

    def score_shift_ids(self) -> list[int]:
        """Indices (into the pseudo-anomaly set's K shifts) of the shifts the score uses."""
        names = PseudoAnomalySet(self.transforms.pseudo_anomalies).shift_names
        chosen = self.score.shifts
        if chosen is None:
            return list(range(len(names)))
        if isinstance(chosen, str) or not isinstance(chosen, (list, tuple)) or not chosen:
            raise ConfigError(f"score.shifts must be a non-empty list of shift names ({', '.join(names)}) "
                              f"or null for all of them; got {chosen!r}")
        unknown = [c for c in chosen if c not in names]
        if unknown:
            raise ConfigError(f"score.shifts: {', '.join(map(repr, unknown))} is not a shift of this detector's "
                              f"pseudo-anomalies; choose from {', '.join(names)}")
        if len(set(chosen)) != len(chosen):
            raise ConfigError(f"score.shifts lists a shift twice: {chosen!r}")
        return [names.index(c) for c in chosen]

