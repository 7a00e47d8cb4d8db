"""The kNN baseline's configuration: feature stages, bank and coreset, and the backbone it trains."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robustad.config import CalibrationConfig, ConfigMixin, EvaluationConfig
from robustad.errors import ConfigError
from robustad.methods.baseline_common import check_shared_sections
from robustad.methods.cobra.config import CobraConfig

__all__ = ["KNNConfig", "LAYERS", "MODES"]


LAYERS = ("layer1", "layer2", "layer3", "layer4")  # ResNet18.layers[0..3], torchvision's names
MODES = ("patch", "image")

@dataclass
class KNNConfig(ConfigMixin):
    image_size: int | None = None  # resize inputs to this size; None = keep the data's size
    backbone_preset: str = "cpu-small"  # COBRA preset the backbone is trained with (adversarial off)
    backbone_overrides: dict[str, Any] = field(default_factory=dict)  # dotted overrides of that COBRA config
    mode: str = "patch"  # patch (PatchCore) | image (one pooled vector per image)
    layers: list[str] = field(default_factory=lambda: ["layer2", "layer3"])
    patch_pool: int = 3  # side of the neighbourhood averaged into each patch feature; 1 = none
    k: int = 1  # nearest bank entries averaged per patch (per image in image mode)
    coreset_fraction: float | None = None  # share of the bank kept; None = 0.1 in patch mode, 1 in image mode
    projection_dim: int = 128  # random projection used only to speed up coreset selection; 0 = none
    bank_size: int | None = 20000  # cap on bank entries (the coreset picks them); None = no cap
    # patch features the coreset chooses from (a seeded random subset when there are more): greedy
    # k-center costs bank x candidates distance evaluations, hours on a CPU for 500k patches
    max_candidates: int | None = 50000
    chunk_size: int = 4096  # rows per side of each cdist block: memory ~ chunk_size^2 floats
    seed: int = 0  # coreset selection (the backbone has its own train.seed)
    device: str = "auto"
    score: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "KNNConfig":
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.layers or any(name not in LAYERS for name in self.layers):
            raise ConfigError(f"layers must be a non-empty list of {', '.join(LAYERS)}, got {self.layers!r}")
        if len(set(self.layers)) != len(self.layers):
            raise ConfigError(f"layers lists a stage twice: {self.layers!r}")
        if self.patch_pool < 1 or self.patch_pool % 2 == 0:
            raise ConfigError(f"patch_pool must be an odd number >= 1 (the patch stays centred), got {self.patch_pool}")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.coreset_fraction is not None and (
            isinstance(self.coreset_fraction, bool) or not 0.0 < float(self.coreset_fraction) <= 1.0
        ):
            raise ConfigError(f"coreset_fraction must be in (0, 1] (1 = keep every entry), got {self.coreset_fraction}")
        if self.projection_dim < 0:
            raise ConfigError(f"projection_dim must be >= 0, got {self.projection_dim}")
        if self.bank_size is not None and self.bank_size < 1:
            raise ConfigError(f"bank_size must be >= 1 or null, got {self.bank_size}")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise ConfigError(f"max_candidates must be >= 1 or null, got {self.max_candidates}")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not isinstance(self.backbone_overrides, dict):
            raise ConfigError(
                f"backbone_overrides must be a mapping of COBRA config overrides, got {self.backbone_overrides!r}"
            )
        if self.coreset_fraction is not None:
            self.coreset_fraction = float(self.coreset_fraction)
        check_shared_sections(self)
        return self

    def effective_coreset_fraction(self) -> float:
        if self.coreset_fraction is not None:
            return float(self.coreset_fraction)
        return 0.1 if self.mode == "patch" else 1.0

    def backbone_config(self) -> CobraConfig:
        """The COBRA config the backbone is trained with: the preset, the overrides, no adversaries."""
        overrides = {**self.backbone_overrides, "adversarial.enabled": False}
        if self.image_size is not None:
            overrides["image_size"] = self.image_size
        overrides.setdefault("train.device", self.device)
        # the backbone's own threshold is never used: give all its images to training
        overrides.setdefault("score.holdout_fraction", 0.0)
        return CobraConfig.from_preset(self.backbone_preset).with_overrides(overrides)

    @classmethod
    def from_preset(cls, name: str) -> "KNNConfig":
        """A kNN detector whose backbone is trained as the COBRA preset `name`, adversaries off."""
        cobra = CobraConfig.from_preset(name)
        return cls(
            image_size=cobra.image_size,
            backbone_preset=name,
            seed=cobra.train.seed,
            device=cobra.train.device,
            score=CalibrationConfig(cobra.score.holdout_fraction, cobra.score.target_fpr, cobra.score.batch_size),
            evaluation=cobra.evaluation,
        ).validate()
