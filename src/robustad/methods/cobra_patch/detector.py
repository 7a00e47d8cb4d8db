"""The COBRA-patch detector: fit on normal images, score, anomaly maps, predict, save and load.

>>> det = PatchCobra.from_preset("textures-cpu").fit(normal_images)
>>> det.score(x)            # [N], higher = more anomalous
>>> det.anomaly_map(x)      # [N, 1, H, W], higher = more anomalous there
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from robustad.errors import DataError
from robustad.methods.base import AnomalyMaps, BaseDetector
from robustad.methods.baseline_common import load_normal_images, split_holdout
from robustad.methods.checkpoint import SavesScorer, calibrate, fit_record
from robustad.methods.cobra_patch.config import PatchCobraConfig
from robustad.methods.cobra_patch.objective import PatchObjective
from robustad.methods.cobra_patch.score import PatchScore, PatchTrunk
from robustad.methods.training import TrainReport, train
from robustad.models.pretrained import load_lite0_trunk
from robustad.provenance import RunRecord
from robustad.runtime import resolve_device
from robustad.transforms.defects import SyntheticDefects

__all__ = ["PatchCobra"]


class PatchCobra(AnomalyMaps, SavesScorer, BaseDetector):
    """COBRA's pairs and adversarial training on patch features of an ImageNet-initialised trunk,
    scored by the distance of each patch to a bank of training patches."""

    name = "cobra-patch"
    config_class = PatchCobraConfig

    @classmethod
    def accepted_overrides(cls, overrides: dict, log=None) -> dict:
        return dict(overrides)  # its config validates every key (adversarial.eps, loss.* are its own too)

    def __init__(self, config: PatchCobraConfig | None = None, overrides: dict | list | None = None, **kwargs: Any):
        self._configure(config, overrides, kwargs)
        self.scorer: PatchScore | None = None
        self.train_report_: TrainReport | None = None
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def from_preset(cls, name: str, overrides: dict | list | None = None, **kwargs: Any) -> "PatchCobra":
        return cls(PatchCobraConfig.from_preset(name), overrides=overrides, **kwargs)

    def _trunk(self, pretrained: bool) -> PatchTrunk:
        b = self.config.backbone
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
            torch.manual_seed(self.config.train.seed)
            trunk = load_lite0_trunk(b.taps, pretrained=pretrained and b.pretrained)
        return PatchTrunk(trunk, b.input_size, b.patch_pool)

    def _build(self, net: PatchTrunk, in_channels: int, image_size: tuple[int, int], device: torch.device) -> None:
        s = self.config.score
        self.scorer = PatchScore(net, s.k, s.chunk_size, s.aggregate, s.map_sigma, density_k=s.density_k).to(device).eval()
        self.in_channels_ = in_channels
        self.image_size_ = image_size

    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None) -> "PatchCobra":
        """Fine-tune the trunk on normal images, fill the patch bank, calibrate the threshold.

        With run_dir, training checkpoints there every train.checkpoint_every epochs and an
        interrupted call resumes from the last checkpoint.
        """
        started = time.perf_counter()
        c = self.config
        x = load_normal_images(normal_images, self.resize_to)
        train_x, holdout_x = split_holdout(x, c.score.holdout_fraction, c.train.seed + 1)
        if train_x.shape[0] < 2:
            raise DataError(f"need at least 2 normal training images, got {train_x.shape[0]}")
        device = resolve_device(c.train.device)
        net = self._trunk(pretrained=True).to(device).eval()
        reference = copy.deepcopy(net).requires_grad_(False)
        with torch.no_grad():  # the unit of feature distances: the starting features' mean squared norm
            probe = train_x[: c.train.batch_size].to(device)
            scale = float(reference(probe).pow(2).sum(1).mean().clamp_min(1e-8))
        objective = PatchObjective(net, reference, SyntheticDefects(c.defects.shapes, c.defects.fills), c.loss,
                                   c.adversarial, c.defects.flips, scale)
        identity = RunRecord.of_training(self.name, c.to_dict(), x, defaults=type(c)().to_dict())
        self.train_report_ = train(objective, train_x, c.train, device, checkpoint_dir=Path(run_dir) if run_dir else None,
                                   run=identity, progress=progress, log=log)
        net.eval().requires_grad_(False)
        self._build(net, x.shape[1], tuple(x.shape[-2:]), device)
        bank_started = time.perf_counter()
        s = c.score
        bank_info = self.scorer.fill_bank(train_x, s.batch_size, s.coreset_fraction, s.bank_size, s.max_candidates,
                                          s.projection_dim, c.train.seed)
        bank_seconds = time.perf_counter() - bank_started
        calibrate(self, holdout_x, s.target_fpr)
        self.fit_info_ = fit_record(train_x, holdout_x, identity.images["digest"], started, self.train_report_,
                                    **bank_info, feature_scale=scale, bank_seconds=bank_seconds)
        return self

    # --- save / load ----------------------------------------------------------------------------
    @classmethod
    def _rebuild(cls, config, meta, tensors, in_channels, image_size, path):
        detector = cls(config)
        detector._build(detector._trunk(pretrained=False), in_channels, image_size, torch.device("cpu"))
        return detector
