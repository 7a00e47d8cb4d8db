"""Deep SVDD's configuration: the network's size, its training defaults, and what it reads from a preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from robustad.config import (
    MAX_MODEL_WIDTH,
    Budget,
    CalibrationConfig,
    ConfigMixin,
    EvaluationConfig,
    TrainConfig,
    check_upper_bound,
)
from robustad.errors import ConfigError
from robustad.methods.baseline_common import check_shared_sections

__all__ = ["DeepSVDDConfig", "SVDDModelConfig"]


@dataclass
class SVDDModelConfig:
    width: int = 16  # ResNet-18 width multiplier, as COBRA's model.width
    stem: str = "cifar"
    rep_dim: int = 128  # dimension of the hypersphere's space


def _svdd_train_defaults() -> TrainConfig:
    # Adam as in Ruff et al.; lr 1e-3 suits the small budgets here (their 1e-4 needs ~150 epochs).
    return TrainConfig(epochs=10, optimizer="adam", lr=1e-3, weight_decay=1e-6, warmup_epochs=1)


@dataclass
class DeepSVDDConfig(ConfigMixin):
    image_size: int | None = None  # resize inputs to this size; None = keep the data's size
    model: SVDDModelConfig = field(default_factory=SVDDModelConfig)
    train: TrainConfig = field(default_factory=_svdd_train_defaults)
    score: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "DeepSVDDConfig":
        _check_model(self.model.width, self.model.stem)
        if self.model.rep_dim < 1:
            raise ConfigError(f"model.rep_dim must be >= 1, got {self.model.rep_dim}")
        self.train.validate()
        check_shared_sections(self)
        return self

    @classmethod
    def from_preset(cls, name: str) -> "DeepSVDDConfig":
        """The backbone and budget of a COBRA preset (size, width, stem, epochs, steps, batch, seed).

        The optimiser stays Adam at lr 1e-3: COBRA's SGD at lr 0.1 is tuned for its contrastive
        loss, not for a squared distance.
        """
        budget = Budget.from_preset(name)
        config = cls()
        config.image_size = budget.image_size
        config.model.width, config.model.stem = budget.model.width, budget.model.stem
        for key in ("epochs", "batch_size", "steps_per_epoch", "warmup_epochs", "seed", "device", "checkpoint_every"):
            setattr(config.train, key, getattr(budget.train, key))
        config.score = budget.calibration()
        config.evaluation = budget.evaluation
        return config.validate()


def _check_model(width: int, stem: str) -> None:
    if stem not in ("cifar", "imagenet"):
        raise ConfigError(f"model.stem must be 'cifar' or 'imagenet', got {stem!r}")
    if width < 1:
        raise ConfigError(f"model.width must be >= 1, got {width}")
    check_upper_bound("model.width", width, MAX_MODEL_WIDTH)
