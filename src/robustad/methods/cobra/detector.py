"""The COBRA detector: fit on normal images, score, predict, save and load."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from robustad.config import parse_overrides
from robustad.errors import ConfigError, DataError
from robustad.methods.adversarial import OverfitGuard
from robustad.methods.base import BaseDetector
from robustad.methods.baseline_common import load_normal_images
from robustad.methods.checkpoint import SavesScorer, calibrate, fit_record
from robustad.methods.cobra.config import CobraConfig
from robustad.methods.cobra.loss import CONTRASTIVE_VARIANTS
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.cobra.score import ShiftScore
from robustad.methods.pseudo_filter import PseudoAnomalyFilter
from robustad.methods.training import TrainReport, train
from robustad.models.heads import ShiftContrastiveNet
from robustad.provenance import RunRecord
from robustad.runtime import resolve_device
from robustad.transforms.pseudo_anomaly import PseudoAnomalySet
from robustad.transforms.views import LightViews, ViewConfig


class Cobra(SavesScorer, BaseDetector):
    """COBRA: shift-contrastive training with opposite pairs and adversarial examples.

    >>> det = Cobra.from_preset("cpu-small", overrides={"train.epochs": 2})
    >>> det.fit(normal_images).score(x)          # higher = more anomalous
    """

    name = "cobra"
    config_class = CobraConfig

    @classmethod
    def accepted_overrides(cls, overrides: dict, log=None) -> dict:
        return dict(overrides)  # a preset's keys are COBRA's own: every one is validated by its config

    def __init__(self, config: CobraConfig | None = None, overrides: dict | list | None = None, **kwargs: Any):
        config = config or CobraConfig()
        # keyword overrides use "__" for nesting: Cobra(train__epochs=3)
        extra = {k.replace("__", "."): v for k, v in kwargs.items()}
        self.config = config.with_overrides({**_as_dict(overrides), **extra}) if (overrides or extra) else config
        self.config.validate()
        loss = self.config.loss
        if loss.contrastive not in CONTRASTIVE_VARIANTS:
            raise ConfigError(f"loss.contrastive must be one of {', '.join(CONTRASTIVE_VARIANTS)}, got {loss.contrastive!r}")
        if loss.contrastive == "none" and not loss.classification:
            raise ConfigError("loss.contrastive=none with loss.classification=false leaves nothing to train; "
                              "turn one of them on")
        self.pseudo_anomalies = PseudoAnomalySet(self.config.transforms.pseudo_anomalies)
        t = self.config.transforms
        self.views = LightViews(
            ViewConfig(
                crop_scale=tuple(t.crop_scale),
                jitter_strength=t.jitter_strength,
                jitter_p=t.jitter_p,
                grayscale_p=t.grayscale_p,
                flip=t.flip,
            )
        )
        self.resize_to = self.config.image_size
        self.score_batch_size = self.config.score.batch_size
        self.net: ShiftContrastiveNet | None = None
        self.scorer: ShiftScore | None = None
        self.train_report_: TrainReport | None = None
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def from_preset(cls, name: str, overrides: dict | list | None = None, **kwargs: Any) -> "Cobra":
        return cls(CobraConfig.from_preset(name), overrides=overrides, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    # --- building blocks ------------------------------------------------------------------------
    def _build(self, in_channels: int, image_size: tuple[int, int], device: torch.device) -> None:
        m = self.config.model
        with torch.random.fork_rng(devices=[]):  # seeded weight init without touching the caller's RNG
            torch.manual_seed(self.config.train.seed)
            self.net = ShiftContrastiveNet(
                in_channels, self.pseudo_anomalies.num_shifts, m.width, m.stem, m.projection_dim
            )
        self.net.to(device)
        self.scorer = ShiftScore(
            self.net,
            self.pseudo_anomalies,
            self.views,
            self.config.score.views,
            self.config.score.seed,
            use_shift_term=self.config.loss.classification,
            shift_ids=self.config.score_shift_ids(),
        ).to(device)
        self.in_channels_ = in_channels
        self.image_size_ = image_size

    # --- fit ------------------------------------------------------------------------------------
    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None) -> "Cobra":
        """Train on normal images ([N,C,H,W] / [N,H,W] tensor or array, or a Dataset).

        With run_dir, training checkpoints there every train.checkpoint_every epochs and an
        interrupted call resumes from the last checkpoint.
        """
        started = time.perf_counter()
        x = load_normal_images(normal_images, self.resize_to)
        if x.shape[-1] != x.shape[-2] and "rotation" in self.config.transforms.pseudo_anomalies:
            raise DataError(
                f"rotation pseudo-anomalies need square images, got {x.shape[-2]}x{x.shape[-1]}; "
                "set image_size to resize them"
            )
        train_x, holdout_x = self._split_holdout(x)
        if train_x.shape[0] < 2:
            raise DataError(f"need at least 2 normal training images, got {train_x.shape[0]}")
        device = resolve_device(self.config.train.device)
        self._build(x.shape[1], tuple(x.shape[-2:]), device)
        filter_cfg = self.config.transforms.filter
        accept = self._pseudo_filter(train_x, device) if filter_cfg.enabled else None
        objective = CobraObjective(
            self.net, self.pseudo_anomalies, self.views, self.config.loss, self.config.adversarial,
            accept=accept, redraws=filter_cfg.redraws,
        )
        run_dir = Path(run_dir) if run_dir is not None else None
        identity = RunRecord.of_training(self.name, self.config.to_dict(), x, defaults=type(self.config)().to_dict())
        self.train_report_ = train(
            objective,
            train_x,
            self.config.train,
            device,
            checkpoint_dir=run_dir,
            run=identity,
            progress=progress,
            log=log,
            guard=self._overfit_guard(objective, holdout_x if holdout_x.shape[0] else train_x, device),
        )
        bank_x = self._bank_subset(train_x)
        self.net.eval()
        self.scorer.fit_bank(bank_x, self.config.score.batch_size)
        self._calibrate(holdout_x)
        extra = {"overfit_guard": self.train_report_.guard} if self.train_report_.guard else {}
        if accept is not None:  # tallies of this call's training steps (a resumed run counts its own part)
            extra["pseudo_filter"] = accept.summary(objective.filter_counts)
        self.fit_info_ = fit_record(train_x, holdout_x, identity.images["digest"], started, self.train_report_,
                                    num_bank=int(bank_x.shape[0]), **extra)
        return self

    def _pseudo_filter(self, train_x: torch.Tensor, device) -> PseudoAnomalyFilter:
        """The pseudo-anomaly filter, its Gaussian fitted to two light views of every training image:
        candidates are made from views, so a view's colour jitter alone must not count as anomalous."""
        cfg = self.config.transforms.filter
        generator = torch.Generator().manual_seed(self.config.train.seed + 3)
        return PseudoAnomalyFilter(cfg.quantile, cfg.size).to(device).fit(
            train_x, lambda batch: self.views(batch, generator), passes=2)

    def _overfit_guard(self, objective: CobraObjective, images: torch.Tensor, device) -> OverfitGuard | None:
        """The catastrophic-overfitting guard on the first adversarial.guard_images held-out images
        (training images when nothing is held out), or None when it is off."""
        adv = self.config.adversarial
        if adv.guard_steps == 0 or not adv.enabled or adv.eps <= 0:
            return None
        probe_x = images[: adv.guard_images].to(device)
        return OverfitGuard(lambda generator: objective.shift_accuracy(probe_x, generator), adv.guard_drop,
                            adv.guard_action, objective.fall_back, self.config.train.seed, device)

    def _split_holdout(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_holdout = int(round(x.shape[0] * self.config.score.holdout_fraction))
        if n_holdout == 0:
            return x, x[:0]
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.config.train.seed + 1))
        return x[perm[n_holdout:]], x[perm[:n_holdout]]

    def _bank_subset(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.score.bank_size
        if size is None or size >= x.shape[0]:
            return x
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.config.train.seed + 2))
        return x[perm[:size]]

    def _calibrate(self, holdout_x: torch.Tensor) -> None:
        """Threshold at the target false-positive rate on held-out normals, plus a scale for attacks."""
        calibrate(self, holdout_x, self.config.score.target_fpr)

    # --- save / load ------------------------------------------------------------------------------
    @classmethod
    def _rebuild(cls, config, meta, tensors, in_channels, image_size, path):
        detector = cls(config)
        detector._build(in_channels, image_size, torch.device("cpu"))
        detector.scorer.bank = torch.empty_like(tensors.get("bank", torch.zeros(0)))
        return detector


def _as_dict(overrides: dict | list | str | None) -> dict:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return overrides

    return parse_overrides(overrides)
