"""The COBRA detector: fit on normal images, score, predict, save and load."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import robustad
from robustad.config import CobraConfig
from robustad.data.arrays import to_image_tensor
from robustad.errors import CheckpointError, DataError
from robustad.methods.base import BaseDetector
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.cobra.score import ShiftScore
from robustad.methods.training import TrainReport, resolve_device, train
from robustad.models.heads import ShiftContrastiveNet
from robustad.transforms.pseudo_anomaly import PseudoAnomalySet
from robustad.transforms.views import LightViews, ViewConfig

CHECKPOINT_FORMAT = 1
WEIGHTS_FILE = "detector.safetensors"
META_FILE = "detector.json"


def library_versions() -> dict[str, str]:
    import kornia
    import sklearn

    return {
        "robustad": robustad.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


class Cobra(BaseDetector):
    """COBRA: shift-contrastive training with opposite pairs and adversarial examples.

    >>> det = Cobra.from_preset("cpu-small", overrides={"train.epochs": 2})
    >>> det.fit(normal_images).score(x)          # higher = more anomalous
    """

    name = "cobra"

    def __init__(self, config: CobraConfig | None = None, overrides: dict | list | None = None, **kwargs: Any):
        config = config or CobraConfig()
        # keyword overrides use "__" for nesting: Cobra(train__epochs=3)
        extra = {k.replace("__", "."): v for k, v in kwargs.items()}
        self.config = config.with_overrides({**_as_dict(overrides), **extra}) if (overrides or extra) else config
        self.config.validate()
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
        ).to(device)
        self.in_channels_ = in_channels
        self.image_size_ = image_size

    def fingerprint(self, in_channels: int, image_size: tuple[int, int], num_images: int) -> str:
        """Identifies a training run: a checkpoint only resumes the run that wrote it."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": robustad.__version__,
            "config": {k: v for k, v in self.config.to_dict().items() if k != "score"},
            "data": [in_channels, list(image_size), num_images],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    # --- fit ------------------------------------------------------------------------------------
    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None) -> "Cobra":
        """Train on normal images ([N,C,H,W] / [N,H,W] tensor or array, or a Dataset).

        With run_dir, training checkpoints there every train.checkpoint_every epochs and an
        interrupted call resumes from the last checkpoint.
        """
        started = time.perf_counter()
        x = to_image_tensor(normal_images, name="normal images")
        if self.resize_to is not None and tuple(x.shape[-2:]) != (self.resize_to, self.resize_to):
            x = torch.nn.functional.interpolate(
                x, size=(self.resize_to, self.resize_to), mode="bilinear", antialias=True
            ).clamp(0, 1)
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
        objective = CobraObjective(
            self.net, self.pseudo_anomalies, self.views, self.config.loss, self.config.adversarial
        )
        run_dir = Path(run_dir) if run_dir is not None else None
        self.train_report_ = train(
            objective,
            train_x,
            self.config.train,
            device,
            checkpoint_dir=run_dir,
            fingerprint=self.fingerprint(x.shape[1], tuple(x.shape[-2:]), x.shape[0]),
            progress=progress,
            log=log,
        )
        bank_x = self._bank_subset(train_x)
        self.net.eval()
        self.scorer.fit_bank(bank_x, self.config.score.batch_size)
        self._calibrate(holdout_x)
        self.fit_info_ = {
            "num_train": int(train_x.shape[0]),
            "num_holdout": int(holdout_x.shape[0]),
            "num_bank": int(bank_x.shape[0]),
            "fit_seconds": time.perf_counter() - started,
            "train_seconds": self.train_report_.seconds,
            "train_images_per_second": self.train_report_.images_per_second,
            "history": self.train_report_.history,
        }
        return self

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
        if holdout_x.shape[0] == 0:
            self.threshold_ = float("nan")
            self.score_center_, self.score_scale_ = 0.0, 1.0
            return
        scores = self.score(holdout_x).double()
        self.threshold_ = float(torch.quantile(scores, 1.0 - self.config.score.target_fpr))
        self.score_center_ = float(scores.median())
        self.score_scale_ = float(scores.std()) if scores.numel() > 1 and scores.std() > 0 else 1.0

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.scorer.training:  # the score is defined in eval mode (running BatchNorm statistics)
            self.scorer.eval()
        return self.scorer(x)

    def to(self, device: str | torch.device) -> "Cobra":
        self._check_fitted()
        self.scorer.to(device)
        return self

    # --- save / load ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write detector.safetensors (weights, bank) and detector.json (config, statistics)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.scorer.state_dict().items()}
        meta = {
            "format": CHECKPOINT_FORMAT,
            "kind": "robustad-detector",
            "method": self.name,
            "robustad_version": robustad.__version__,
            "config": self.config.to_dict(),
            "in_channels": self.in_channels_,
            "image_size": list(self.image_size_),
            "threshold": self.threshold_,
            "score_center": self.score_center_,
            "score_scale": self.score_scale_,
            "fit_info": self.fit_info_,
            "library_versions": library_versions(),
        }
        tmp = path / (WEIGHTS_FILE + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, path / WEIGHTS_FILE)
        (path / (META_FILE + ".tmp")).write_text(json.dumps(meta, indent=2, default=float))
        os.replace(path / (META_FILE + ".tmp"), path / META_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "Cobra":
        path = Path(path)
        meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise CheckpointError(
                f"{path} is not a robustad detector: it needs {META_FILE} and {WEIGHTS_FILE} "
                "(as written by save() or `robustad train`)"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{meta_path} is not valid JSON ({err}); the checkpoint is corrupt") from None
        if meta.get("kind") != "robustad-detector" or meta.get("method") != cls.name:
            raise CheckpointError(f"{path} holds a {meta.get('method', 'unknown')!r} checkpoint, not a {cls.name!r} one")
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path} has checkpoint format {meta.get('format')} (written by robustad "
                f"{meta.get('robustad_version')}); this robustad {robustad.__version__} reads format "
                f"{CHECKPOINT_FORMAT}. Re-train, or install the robustad version that wrote it."
            )
        try:
            config = CobraConfig.from_dict(meta["config"], source=str(meta_path))
        except robustad.ConfigError as err:
            raise CheckpointError(f"{path}: its config does not fit this robustad version: {err}") from None
        detector = cls(config)
        if device is not None:
            detector.config.train.device = device
        try:
            tensors = load_file(str(weights_path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{weights_path} is not a readable safetensors file ({err})") from None
        detector._build(int(meta["in_channels"]), tuple(meta["image_size"]), resolve_device(detector.config.train.device))
        detector.scorer.bank = torch.empty_like(tensors.get("bank", torch.zeros(0)))
        try:
            detector.scorer.load_state_dict(tensors)
        except RuntimeError as err:
            first = str(err).splitlines()[0:3]
            raise CheckpointError(
                f"{weights_path} does not match the config in {meta_path} ({' '.join(first)}); "
                "the two files come from different runs"
            ) from None
        detector.scorer.to(detector.device).eval()
        detector.threshold_ = meta["threshold"] if meta["threshold"] is not None else float("nan")
        detector.score_center_ = meta["score_center"]
        detector.score_scale_ = meta["score_scale"]
        detector.fit_info_ = meta.get("fit_info", {})
        return detector


def _as_dict(overrides: dict | list | None) -> dict:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return overrides
    from robustad.config import _parse_overrides

    return _parse_overrides(overrides)
