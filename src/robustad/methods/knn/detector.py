"""kNN anomaly detection on the features of a non-robust backbone, PatchCore-style.

There are no pretrained ImageNet weights here, so the backbone is COBRA's ResNet-18 trained on
the normal images with COBRA's own objective but without adversarial examples (or any fitted
Cobra passed in). Patch mode (Roth et al., "Towards total recall in industrial anomaly
detection", 2022): features of two intermediate stages, averaged over 3x3 neighbourhoods, the
deeper one upsampled to the shallower's grid and concatenated; a memory bank of the training
patches, thinned by greedy k-center coreset selection; an image scores the largest distance of
any of its patches to the nearest bank patch. Image mode: one pooled feature vector per image
and kNN over the training images.

The score is differentiable in x: the nearest bank entries are searched without gradients
(chunked torch.cdist, bounded memory), then the distances to them are recomputed with gradients.
That is the same function and the same (sub)gradient as a min over the whole bank.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from robustad.config import parse_overrides
from robustad.errors import ConfigError, DataError
from robustad.methods.base import BaseDetector
from robustad.methods.baseline_common import (
    load_normal_images,
    split_holdout,
)
from robustad.methods.checkpoint import (
    SavesScorer,
    calibrate,
    config_from_meta,
    fit_record,
)
from robustad.methods.cobra.config import CobraConfig
from robustad.methods.cobra.detector import Cobra
from robustad.methods.knn.config import LAYERS, KNNConfig
from robustad.methods.patch_bank import PatchBankScore, patch_grid
from robustad.models.resnet import ResNet18
from robustad.provenance import images_digest
from robustad.runtime import resolve_device

__all__ = ["KNNDetector", "KNNScore", "stage_features"]


# --- features ---------------------------------------------------------------------------------------
def stage_features(encoder: ResNet18, x: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
    """Outputs of the named ResNet stages, in the order given; stops after the deepest one."""
    wanted = {LAYERS.index(n) for n in names}
    out, h = {}, encoder.stem(x)
    for i, layer in enumerate(encoder.layers):
        if i > max(wanted):
            break
        h = layer(h)
        if i in wanted:
            out[i] = h
    return [out[LAYERS.index(n)] for n in names]


class KNNScore(PatchBankScore):
    """x [N,C,H,W] -> kNN anomaly score [N] against a bank of training features."""

    def __init__(self, encoder: ResNet18, layers: list[str], mode: str, patch_pool: int, k: int,
                 chunk_size: int, bank_dim: int = 0):
        super().__init__(k, chunk_size, bank_dim)
        self.encoder = encoder
        self.layers = list(layers)
        self.mode = mode
        self.patch_pool = patch_pool

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch mode: [N, P, D] (P = patches on the shallowest stage's grid); image mode: [N, 1, D]."""
        maps = stage_features(self.encoder, x, self.layers)
        if self.mode == "image":
            return torch.cat([F.adaptive_avg_pool2d(m, 1).flatten(1) for m in maps], dim=1).unsqueeze(1)
        return patch_grid(maps, self.patch_pool)


# --- the detector ----------------------------------------------------------------------------------
class KNNDetector(SavesScorer, BaseDetector):
    """kNN on features of a non-robustly trained COBRA backbone (PatchCore-style in patch mode).

    >>> det = KNNDetector(backbone_preset="cpu-small", coreset_fraction=0.1).fit(normal_images)
    >>> det = KNNDetector(backbone=fitted_cobra, mode="image").fit(normal_images)
    """

    name = "knn"
    config_class = KNNConfig
    device_field = "device"

    @classmethod
    def accepted_overrides(cls, overrides: dict, log=None) -> dict:
        """Its own keys; the rest configure the COBRA network it trains as a backbone."""
        own = set(KNNConfig.__dataclass_fields__)
        knn = {k: v for k, v in overrides.items() if k.split(".")[0] in own and not k.startswith(cls.FOREIGN_SECTIONS)}
        backbone = {k: v for k, v in overrides.items() if k.split(".")[0] not in own}
        if backbone:
            knn["backbone_overrides"] = backbone
        return knn

    def __init__(self, config: KNNConfig | None = None, overrides: dict | list | None = None, backbone=None,
                 *, validate_backbone: bool = True, **kwargs: Any):
        config = config or KNNConfig()
        extra = {k.replace("__", "."): v for k, v in kwargs.items()}  # KNNDetector(score__target_fpr=0.1)
        merged = {**parse_overrides(overrides), **extra}
        self.config = config.with_overrides(merged) if merged else config.validate()
        if backbone is not None:
            if not (hasattr(backbone, "net") and hasattr(backbone, "config") and hasattr(backbone.net, "encoder")):
                raise ConfigError(f"backbone must be a fitted Cobra detector, got {type(backbone).__name__}")
            if self.config.image_size is None and getattr(backbone, "resize_to", None) is not None:
                self.config.image_size = backbone.resize_to  # inputs must reach the backbone at its size
        elif validate_backbone:
            self.config.backbone_config()  # a bad preset or override fails now, not at fit()
        self._given_backbone = backbone
        self.resize_to = self.config.image_size
        self.score_batch_size = self.config.score.batch_size
        self.backbone_config_: CobraConfig | None = None
        self.scorer: KNNScore | None = None
        self.score_center_, self.score_scale_ = 0.0, 1.0
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def from_preset(
        cls, name: str, overrides: dict | list | None = None, backbone=None, **kwargs: Any
    ) -> "KNNDetector":
        return cls(KNNConfig.from_preset(name), overrides=overrides, backbone=backbone, **kwargs)

    def _make_scorer(self, encoder: ResNet18, bank_dim: int = 0) -> KNNScore:
        c = self.config
        return KNNScore(encoder, c.layers, c.mode, c.patch_pool, c.k, c.chunk_size, bank_dim)

    def _backbone(self, train_x: torch.Tensor, run_dir, progress, log) -> tuple[ResNet18, CobraConfig, dict]:
        given = self._given_backbone
        if given is not None:
            if getattr(given, "in_channels_", None) is None or given.net is None:
                raise ConfigError("the backbone Cobra is not fitted yet: fit() or load() it first")
            if given.in_channels_ != train_x.shape[1] or tuple(given.image_size_) != tuple(train_x.shape[-2:]):
                raise DataError(
                    f"the backbone was trained on {given.in_channels_}-channel {given.image_size_[0]}x"
                    f"{given.image_size_[1]} images, these are {train_x.shape[1]}-channel "
                    f"{train_x.shape[-2]}x{train_x.shape[-1]}; set image_size to match"
                )
            # a copy: later changes to the Cobra (device, training) do not reach this detector
            return copy.deepcopy(given.net.encoder).cpu(), given.config, {"backbone": "given",
                                                                           "backbone_fit_info": given.fit_info_}

        cobra = Cobra(self.config.backbone_config())
        cobra.fit(train_x, run_dir=Path(run_dir) / "backbone" if run_dir is not None else None,
                  progress=progress, log=log)
        return cobra.net.encoder, cobra.config, {"backbone": "trained", "backbone_fit_info": cobra.fit_info_}

    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None) -> "KNNDetector":
        """Train the backbone (unless one was given), fill the memory bank, calibrate the threshold.

        With run_dir, the backbone's training checkpoints go to run_dir/backbone and resume.
        """
        started = time.perf_counter()
        x = load_normal_images(normal_images, self.resize_to)
        train_x, holdout_x = split_holdout(x, self.config.score.holdout_fraction, self.config.seed + 1)
        if train_x.shape[0] < 2:
            raise DataError(f"need at least 2 normal training images, got {train_x.shape[0]}")
        encoder, self.backbone_config_, backbone_info = self._backbone(train_x, run_dir, progress, log)
        device = resolve_device(self.config.device)
        self.scorer = self._make_scorer(encoder).to(device).eval()
        self.in_channels_, self.image_size_ = x.shape[1], tuple(x.shape[-2:])

        bank_started = time.perf_counter()
        c = self.config
        bank_info = self.scorer.fill_bank(train_x, c.score.batch_size, c.effective_coreset_fraction(), c.bank_size,
                                          c.max_candidates, c.projection_dim, c.seed)
        bank_seconds = time.perf_counter() - bank_started

        calibrate(self, holdout_x, self.config.score.target_fpr)
        self.fit_info_ = fit_record(train_x, holdout_x, images_digest(x), started, **bank_info,
                                    bank_seconds=bank_seconds,
                                    backbone_adversarial=bool(self.backbone_config_.adversarial.enabled), **backbone_info)
        return self

    # --- save / load ----------------------------------------------------------------------------
    def _extra_meta(self) -> dict[str, Any]:
        return {"backbone_config": self.backbone_config_.to_dict()}  # load rebuilds the backbone from it

    @classmethod
    def _rebuild(cls, config, meta, tensors, in_channels, image_size, path):
        detector = cls(config, validate_backbone=False)  # the stored backbone config is what counts
        detector.backbone_config_ = config_from_meta(CobraConfig, meta, path, key="backbone_config")
        m = detector.backbone_config_.model
        bank = tensors.get("bank", torch.zeros(0, 0))
        encoder = ResNet18(in_channels, m.width, m.stem)
        detector.scorer = detector._make_scorer(encoder, bank.shape[1] if bank.ndim == 2 else 0)
        return detector
