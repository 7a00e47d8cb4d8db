"""The ensemble's configuration: its members, and what they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robustad.config import Budget, CalibrationConfig, ConfigMixin, EvaluationConfig
from robustad.errors import ConfigError
from robustad.methods.baseline_common import check_shared_sections

__all__ = ["EnsembleConfig"]


@dataclass
class EnsembleConfig(ConfigMixin):
    preset: str = "cpu-small"  # the preset every member is built from
    members: list[str] = field(default_factory=lambda: ["cobra", "pixel-knn"])  # method names
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted settings, given to each member that has them
    image_size: int | None = None
    seed: int = 0  # every member's training seed and hold-out split
    score: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "EnsembleConfig":
        from robustad.methods.catalog import METHODS

        if len(self.members) < 2 or len(set(self.members)) != len(self.members):
            raise ConfigError(f"an ensemble needs two or more different members, got {self.members!r}")
        for name in self.members:
            if name not in METHODS or METHODS[name].detector == "cobra-ensemble":
                raise ConfigError(f"ensemble member {name!r} is not a method of its own; known: "
                                  f"{', '.join(m for m in METHODS if METHODS[m].detector != 'cobra-ensemble')}")
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"overrides must be a mapping of dotted settings, got {self.overrides!r}")
        check_shared_sections(self)
        return self

    @classmethod
    def from_preset(cls, name: str) -> "EnsembleConfig":
        budget = Budget.from_preset(name)
        return cls(preset=name, image_size=budget.image_size, seed=budget.train.seed,
                   score=budget.calibration(), evaluation=budget.evaluation).validate()

    def member_overrides(self) -> dict[str, Any]:
        """What every member is told, on top of the shared preset: the ensemble's size, seed and hold-out."""
        shared = {"image_size": self.image_size, "score.holdout_fraction": self.score.holdout_fraction,
                  "score.target_fpr": self.score.target_fpr}
        return {**self.overrides, **shared}
