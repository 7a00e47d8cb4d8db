"""What every detector offers: the PyOD-style API around a differentiable score.

Subclasses implement fit, which sets ``scorer``: a module mapping validated images on the model's
device to scores [N]; ``score`` validates, batches and calls it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from robustad.config import parse_overrides
from robustad.data.arrays import as_tensor
from robustad.errors import InputError, RobustADError


class NotFittedError(RobustADError):
    """The detector has not been fitted or loaded yet."""


class BaseDetector:
    """score(x) -> [N] anomaly scores (higher = more anomalous); predict(x) -> 0/1 at threshold_."""

    name: str = ""  # the method name stored in detector.json
    config_class: type | None = None  # the dataclass of this detector's settings
    threshold_: float | None = None
    calibration_: dict | None = None  # how the threshold was set (robustad.methods.checkpoint.calibrate)
    in_channels_: int | None = None
    image_size_: tuple[int, int] | None = None
    resize_to: int | None = None
    score_batch_size: int = 256
    decision_scores_: np.ndarray | None = None  # PyOD: scores of the images given to fit_predict
    labels_: np.ndarray | None = None  # PyOD: their 0/1 labels at threshold_

    # sections of a COBRA config (the keys data-set presets and --set speak in) that a detector
    # without them ignores; any other unknown key is an error of the detector's own config
    FOREIGN_SECTIONS = ("loss.", "adversarial.", "transforms.", "model.projection_dim")

    @classmethod
    def accepted_overrides(cls, overrides: dict, log=None) -> dict:
        """The part of `overrides` (dotted keys, as --set gives them) this detector takes.

        The default keeps the keys whose section its config has and drops, naming them through `log`,
        those it does not (COBRA's loss for a reference detector, say). Detectors that validate
        every key themselves, or route some to a part of them, override this.
        """
        own = set(cls.config_class.__dataclass_fields__)
        kept = {k: v for k, v in overrides.items() if k.split(".")[0] in own and not k.startswith(cls.FOREIGN_SECTIONS)}
        dropped = [k for k in overrides if k not in kept]
        if dropped and log is not None:
            log(f"{cls.name}: ignoring settings it does not have: {', '.join(dropped)}")
        return kept

    def _configure(self, config, overrides, kwargs: dict) -> None:
        """self.config: `config` (default: config_class's defaults) with dotted `overrides` and keyword
        overrides, "__" standing for "." (Detector(train__epochs=2)); validated either way."""
        config = config or self.config_class()
        merged = {**parse_overrides(overrides), **{k.replace("__", "."): v for k, v in kwargs.items()}}
        self.config = config.with_overrides(merged) if merged else config.validate()
        self.resize_to = self.config.image_size
        self.score_batch_size = self.config.score.batch_size

    # --- input checks -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.in_channels_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() or load() first")

    def prepare(self, x) -> torch.Tensor:
        """Validate a batch [N,C,H,W] and bring it to float in [0,1], the trained size and the device.

        Takes a tensor or a NumPy array, float in [0,1] or uint8 (divided by 255), as fit does.
        """
        self._check_fitted()
        if isinstance(x, np.ndarray):
            x = as_tensor(x, "images")
        if not torch.is_tensor(x):
            raise InputError(f"score() takes images [N,C,H,W] as a tensor or NumPy array (float in [0,1] or uint8), "
                             f"got {type(x).__name__}")
        if x.dtype == torch.uint8:
            x = x.float().div(255.0)
        if x.ndim == 3:
            x = x.unsqueeze(1) if self.in_channels_ == 1 else x.unsqueeze(0)
        if x.ndim != 4:
            raise InputError(f"expected images [N,C,H,W], got shape {tuple(x.shape)}")
        if x.shape[-1] == 0 or x.shape[-2] == 0:
            raise InputError(f"the images have no pixels (shape {tuple(x.shape)}); check how they were loaded")
        if not x.is_floating_point():
            raise InputError(f"expected float images in [0,1] or uint8, got dtype {x.dtype}; scale them to [0,1]")
        if x.shape[1] != self.in_channels_:
            got = f"{x.shape[1]} channel{'s' if x.shape[1] != 1 else ''}"
            raise InputError(
                f"this detector was trained on {self.in_channels_}-channel images but got {got}; "
                + ("convert them to grayscale" if self.in_channels_ == 1 else "repeat the gray channel 3 times")
                + f" (robustad score / evaluate: --channels {self.in_channels_})"
            )
        if x.shape[0] == 0:
            return x.to(device=self.device, dtype=torch.float32)
        bad = (~torch.isfinite(x)).sum().item()
        if bad:
            raise InputError(f"{bad} pixel values are NaN or infinite; clean the images before scoring")
        lo, hi = x.min().item(), x.max().item()
        if lo < 0 or hi > 1:
            raise InputError(f"pixel values must lie in [0,1], got min {lo:.3g} and max {hi:.3g}; scale them first")
        device = self.device
        x = x.to(device=device, dtype=torch.float32)
        if tuple(x.shape[-2:]) != self.image_size_:
            if self.resize_to is None:
                raise InputError(
                    f"this detector was trained on {self.image_size_[0]}x{self.image_size_[1]} images but got "
                    f"{x.shape[-2]}x{x.shape[-1]}; resize them (robustad score: --resize; evaluate: --image-size), "
                    "or train with image_size set so that inputs are resized"
                )
            x = F.interpolate(x, size=self.image_size_, mode="bilinear", align_corners=False, antialias=True)
            x = x.clamp(0, 1)
        return x

    # --- the API ------------------------------------------------------------------------------
    scorer: torch.nn.Module | None = None  # the score as a module: x [N,C,H,W] -> [N]

    @property
    def device(self) -> torch.device:
        # a scorer may hold buffers only (the reference detectors' training images or statistics)
        tensor = next(self.scorer.parameters(), None)
        if tensor is None:
            tensor = next(self.scorer.buffers(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.scorer.training:  # the score is defined with running BatchNorm statistics, never the batch's
            self.scorer.eval()
        return self.scorer(x)

    def to(self, device: str | torch.device) -> "BaseDetector":
        self._check_fitted()
        self.scorer.to(device)
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly scores [N] (higher = more anomalous); differentiable with respect to x."""
        x = self.prepare(x)
        if x.shape[0] == 0:
            return x.new_zeros(0)
        if x.requires_grad and torch.is_grad_enabled():
            return torch.cat([self._score_batch(c) for c in x.split(self.score_batch_size)])
        with torch.no_grad():
            return torch.cat([self._score_batch(c) for c in x.split(self.score_batch_size)])

    def decision_function(self, x) -> np.ndarray:
        """PyOD's name for the scores, as a NumPy array."""
        with torch.no_grad():
            return self.score(x).cpu().numpy()

    def _check_threshold(self) -> None:
        if self.threshold_ is None or math.isnan(self.threshold_):
            raise NotFittedError("no threshold: fit() with score.holdout_fraction > 0, or set threshold_")

    def predict(self, x):
        """1 = anomalous, 0 = normal, at threshold_ (calibrated on held-out normal images).

        A NumPy array in gives a NumPy array out (as PyOD does); a tensor gives a tensor.
        """
        self._check_threshold()
        with torch.no_grad():
            labels = (self.score(x) > self.threshold_).long()
        return labels.cpu().numpy() if isinstance(x, np.ndarray) else labels

    def normalized_score(self, x) -> torch.Tensor:
        """Scores mapped to (0, 1) with the decision threshold at 0.5: sigmoid((score - threshold_) / scale).

        scale is the spread (standard deviation) of the held-out normal images' scores, so 0.73 means
        one such spread above the threshold. Monotone in the raw score: AUROC and decisions are the same.
        """
        self._check_threshold()
        scale = self.score_scale_ if getattr(self, "score_scale_", 0) and self.score_scale_ > 0 else 1.0
        return torch.sigmoid((self.score(x) - self.threshold_) / scale)

    def fit_predict(self, x, **fit_kwargs):
        """PyOD's fit_predict: fit on x, then label x; sets decision_scores_ and labels_ for x.

        Both are scores of the images the detector was fitted on (in-sample: a nearest-neighbour
        score finds the image itself), as in PyOD. fit alone does not score x again.
        """
        self.fit(x, **fit_kwargs)
        self._check_threshold()
        self.decision_scores_ = self.decision_function(x)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self.labels_


class AnomalyMaps:
    """For detectors whose scorer has ``anomaly_map(x) -> [N, 1, H, W]``: maps with score()'s checks."""

    def anomaly_map(self, x) -> torch.Tensor:
        """Anomaly maps [N, 1, H, W] at the input's resolution (higher = more anomalous there)."""
        x = self.prepare(x)
        if x.requires_grad and torch.is_grad_enabled():
            return torch.cat([self.scorer.anomaly_map(c) for c in x.split(self.score_batch_size)])
        with torch.no_grad():
            return torch.cat([self.scorer.anomaly_map(c) for c in x.split(self.score_batch_size)])
