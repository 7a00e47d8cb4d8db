"""One-class Deep SVDD (Ruff et al., ICML 2018) on COBRA's ResNet-18 backbone.

The network f maps images to rep_dim features; training pulls the features of normal images
toward a fixed centre c (the mean feature of the untrained network), and the anomaly score is
||f(x) - c||^2. It shares COBRA's backbone, training loop (checkpoints, resume, LR schedule),
threshold calibration and checkpoint layout, so the two compare on equal terms.

The small helpers at the bottom (config (de)serialisation, hold-out split, calibration,
checkpoint files) are shared with the kNN baseline in robustad.methods.knn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import robustad
from robustad.config import (
    CobraConfig,
    EvaluationConfig,
    TrainConfig,
    _build,
    _deep_merge,
    _parse_overrides,
    config_keys,
    parse_eps,
)
from robustad.data.arrays import to_image_tensor
from robustad.errors import CheckpointError, ConfigError, DataError
from robustad.methods.base import BaseDetector
from robustad.methods.cobra.detector import CHECKPOINT_FORMAT, META_FILE, WEIGHTS_FILE, library_versions
from robustad.methods.training import TrainReport, resolve_device, train
from robustad.models.resnet import ResNet18

__all__ = ["DeepSVDD", "DeepSVDDConfig", "SVDDModelConfig", "BaselineScoreConfig", "SVDDNet", "SVDDScore"]

# The 0.1 floor on |c_i| of Ruff et al.'s reference implementation.
CENTER_EPS = 0.1


# --- config -----------------------------------------------------------------------------------------
class _ConfigMixin:
    """to_dict / from_dict / with_overrides for the baselines' dataclass configs.

    Fields typed as a plain dict (not a dataclass) take free-form dotted keys below them:
    ``backbone_overrides.train.epochs=2`` stores ``{"train.epochs": 2}`` in ``backbone_overrides``.
    """

    def validate(self):
        return self

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config"):
        # missing keys take this class's defaults, not those of the shared section classes
        if isinstance(data, dict):
            data = _deep_merge(cls().to_dict(), data)
        return _build(cls, data, source).validate()

    def with_overrides(self, overrides: dict[str, Any] | list[str] | None):
        cls = type(self)
        data = self.to_dict()
        hints = get_type_hints(cls)
        free_form = {f.name for f in fields(cls) if str(hints[f.name]).startswith("dict")}
        for key, value in _parse_overrides(overrides).items():
            parts = key.split(".")
            if parts[0] in free_form:
                if len(parts) == 1:
                    data[parts[0]] = value
                else:
                    data[parts[0]] = {**(data[parts[0]] or {}), ".".join(parts[1:]): value}
                continue
            node = data
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(config_keys(cls))}")
                node = node[part]
            if parts[-1] not in node or isinstance(node[parts[-1]], dict):
                raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(config_keys(cls))}")
            node[parts[-1]] = value
        return cls.from_dict(data, source="overrides")


@dataclass
class SVDDModelConfig:
    width: int = 16  # ResNet-18 width multiplier, as COBRA's model.width
    stem: str = "cifar"
    rep_dim: int = 128  # dimension of the hypersphere's space


@dataclass
class BaselineScoreConfig:
    holdout_fraction: float = 0.1  # normal images held out to calibrate the threshold
    target_fpr: float = 0.05
    batch_size: int = 256


def _svdd_train_defaults() -> TrainConfig:
    # Adam as in Ruff et al.; lr 1e-3 suits the small budgets here (their 1e-4 needs ~150 epochs).
    return TrainConfig(epochs=10, optimizer="adam", lr=1e-3, weight_decay=1e-6, warmup_epochs=1)


@dataclass
class DeepSVDDConfig(_ConfigMixin):
    image_size: int | None = None  # resize inputs to this size; None = keep the data's size
    model: SVDDModelConfig = field(default_factory=SVDDModelConfig)
    train: TrainConfig = field(default_factory=_svdd_train_defaults)
    score: BaselineScoreConfig = field(default_factory=BaselineScoreConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> "DeepSVDDConfig":
        _check_model(self.model.width, self.model.stem)
        if self.model.rep_dim < 1:
            raise ConfigError(f"model.rep_dim must be >= 1, got {self.model.rep_dim}")
        _check_train(self.train)
        _check_score(self.score, self.image_size)
        _check_evaluation(self.evaluation)
        return self

    @classmethod
    def from_preset(cls, name: str) -> "DeepSVDDConfig":
        """The backbone and budget of a COBRA preset (size, width, stem, epochs, steps, batch, seed).

        The optimiser stays Adam at lr 1e-3: COBRA's SGD at lr 0.1 is tuned for its contrastive
        loss, not for a squared distance.
        """
        cobra = CobraConfig.from_preset(name)
        config = cls()
        config.image_size = cobra.image_size
        config.model.width, config.model.stem = cobra.model.width, cobra.model.stem
        for key in ("epochs", "batch_size", "steps_per_epoch", "warmup_epochs", "seed", "device", "checkpoint_every"):
            setattr(config.train, key, getattr(cobra.train, key))
        config.score = BaselineScoreConfig(cobra.score.holdout_fraction, cobra.score.target_fpr, cobra.score.batch_size)
        config.evaluation = cobra.evaluation
        return config.validate()


def _check_model(width: int, stem: str) -> None:
    if stem not in ("cifar", "imagenet"):
        raise ConfigError(f"model.stem must be 'cifar' or 'imagenet', got {stem!r}")
    if width < 1:
        raise ConfigError(f"model.width must be >= 1, got {width}")


def _check_train(t: TrainConfig) -> None:
    if t.batch_size < 2:
        raise ConfigError(f"train.batch_size must be >= 2, got {t.batch_size}")
    if t.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {t.epochs}")
    if t.optimizer not in ("sgd", "adam"):
        raise ConfigError(f"train.optimizer must be 'sgd' or 'adam', got {t.optimizer!r}")
    if not t.lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")


def _check_score(s: BaselineScoreConfig, image_size: int | None) -> None:
    if not 0.0 < s.target_fpr < 1.0:
        raise ConfigError(f"score.target_fpr must be in (0, 1), got {s.target_fpr}")
    if not 0.0 <= s.holdout_fraction < 1.0:
        raise ConfigError(f"score.holdout_fraction must be in [0, 1), got {s.holdout_fraction}")
    if s.batch_size < 1:
        raise ConfigError(f"score.batch_size must be >= 1, got {s.batch_size}")
    if image_size is not None and image_size < 8:
        raise ConfigError(f"image_size must be >= 8 pixels, got {image_size}")


def _check_evaluation(e: EvaluationConfig) -> None:
    e.eps = parse_eps(e.eps, "evaluation.eps")
    if e.steps < 1:
        raise ConfigError(f"evaluation.steps must be >= 1, got {e.steps}")


# --- network and score ---------------------------------------------------------------------------
class SVDDNet(nn.Module):
    """ResNet-18 encoder and a bias-free two-layer head to rep_dim features.

    Hypersphere collapse (Ruff et al., Prop. 2): with any bias the network can learn f(x) = c
    for every input (zero weights, bias = c), reaching zero loss while detecting nothing. So
    nothing here adds a learnable constant: the final projection has no bias, the head's
    BatchNorm has no affine shift, and the backbone's BatchNorm shifts are frozen at 0. The only
    constant the network can then output is 0, and c stays away from 0 (|c_i| >= 0.1).
    """

    def __init__(self, in_channels: int, width: int = 16, stem: str = "cifar", rep_dim: int = 128):
        super().__init__()
        self.encoder = ResNet18(in_channels=in_channels, width=width, stem=stem)
        for m in self.encoder.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.requires_grad_(False)  # stays at its initial 0; optimisers skip it
        d = self.encoder.feature_dim
        self.head = nn.Sequential(
            nn.Linear(d, d, bias=False),
            nn.BatchNorm1d(d, affine=False),
            nn.ReLU(),
            nn.Linear(d, rep_dim, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class SVDDScore(nn.Module):
    """x -> ||f(x) - c||^2; deterministic and batch-independent in eval mode."""

    def __init__(self, net: SVDDNet, rep_dim: int):
        super().__init__()
        self.net = net
        self.register_buffer("center", torch.zeros(rep_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) - self.center).pow(2).sum(dim=1)


class _SVDDObjective:
    """What robustad.methods.training.train needs: .net and step(x) -> (loss, metrics)."""

    def __init__(self, net: SVDDNet, center: torch.Tensor):
        self.net = net
        self.center = center

    def step(self, x: torch.Tensor, generator: torch.Generator | None):
        loss = (self.net(x) - self.center).pow(2).sum(dim=1).mean()
        return loss, {"loss": float(loss.detach())}


# --- the detector ----------------------------------------------------------------------------------
class DeepSVDD(BaseDetector):
    """One-class Deep SVDD with COBRA's backbone, training loop and checkpoint layout.

    >>> det = DeepSVDD.from_preset("cpu-small", overrides={"train.epochs": 2})
    >>> det.fit(normal_images).score(x)          # higher = more anomalous
    """

    name = "deep-svdd"

    def __init__(self, config: DeepSVDDConfig | None = None, overrides: dict | list | None = None, **kwargs: Any):
        config = config or DeepSVDDConfig()
        extra = {k.replace("__", "."): v for k, v in kwargs.items()}  # DeepSVDD(train__epochs=3)
        merged = {**_parse_overrides(overrides), **extra}
        self.config = config.with_overrides(merged) if merged else config.validate()
        self.resize_to = self.config.image_size
        self.score_batch_size = self.config.score.batch_size
        self.net: SVDDNet | None = None
        self.scorer: SVDDScore | None = None
        self.score_center_, self.score_scale_ = 0.0, 1.0
        self.train_report_: TrainReport | None = None
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def from_preset(cls, name: str, overrides: dict | list | None = None, **kwargs: Any) -> "DeepSVDD":
        return cls(DeepSVDDConfig.from_preset(name), overrides=overrides, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.scorer.parameters()).device

    def _build(self, in_channels: int, image_size: tuple[int, int], device: torch.device) -> None:
        m = self.config.model
        with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
            torch.manual_seed(self.config.train.seed)
            self.net = SVDDNet(in_channels, m.width, m.stem, m.rep_dim)
        self.scorer = SVDDScore(self.net, m.rep_dim).to(device)
        self.in_channels_ = in_channels
        self.image_size_ = image_size

    def fingerprint(self, in_channels: int, image_size: tuple[int, int], num_images: int) -> str:
        """Identifies a training run: a checkpoint only resumes the run that wrote it."""
        return run_fingerprint(self.name, self.config.to_dict(), in_channels, image_size, num_images)

    @torch.no_grad()
    def _initial_center(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Mean feature of the untrained network, with every |c_i| raised to at least CENTER_EPS.

        Computed in train mode (batch statistics), as the loss sees features during training;
        an untrained network's running statistics are still the defaults (0 and 1) and would
        give a centre on another scale. The running statistics these passes update are a fine
        start for training.
        """
        self.net.train()
        total = torch.zeros(self.config.model.rep_dim, dtype=torch.float64, device=device)
        batch = min(self.config.train.batch_size, x.shape[0])
        count = 0
        for start in range(0, x.shape[0] - batch + 1, batch):  # full batches only: BatchNorm needs >= 2
            z = self.net(x[start : start + batch].to(device))
            total += z.double().sum(dim=0)
            count += z.shape[0]
        c = (total / count).float()
        # a near-zero coordinate is one the network can match by shrinking its weights (trivial)
        c[(c.abs() < CENTER_EPS) & (c < 0)] = -CENTER_EPS
        c[(c.abs() < CENTER_EPS) & (c >= 0)] = CENTER_EPS
        return c

    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None) -> "DeepSVDD":
        """Train on normal images ([N,C,H,W] / [N,H,W] tensor or array, or a Dataset).

        With run_dir, training checkpoints there and an interrupted call resumes; the centre is
        recomputed from the seeded initial network, so a resumed run uses the same c.
        """
        started = time.perf_counter()
        x = load_normal_images(normal_images, self.resize_to)
        train_x, holdout_x = split_holdout(x, self.config.score.holdout_fraction, self.config.train.seed + 1)
        if train_x.shape[0] < 2:
            raise DataError(f"need at least 2 normal training images, got {train_x.shape[0]}")
        device = resolve_device(self.config.train.device)
        self._build(x.shape[1], tuple(x.shape[-2:]), device)
        center = self._initial_center(train_x, device)
        self.scorer.center = center
        self.train_report_ = train(
            _SVDDObjective(self.net, center),
            train_x,
            self.config.train,
            device,
            checkpoint_dir=Path(run_dir) if run_dir is not None else None,
            fingerprint=self.fingerprint(x.shape[1], tuple(x.shape[-2:]), x.shape[0]),
            progress=progress,
            log=log,
        )
        self.scorer.eval()
        calibrate(self, holdout_x, self.config.score.target_fpr)
        self.fit_info_ = {
            "num_train": int(train_x.shape[0]),
            "num_holdout": int(holdout_x.shape[0]),
            "fit_seconds": time.perf_counter() - started,
            "train_seconds": self.train_report_.seconds,
            "train_images_per_second": self.train_report_.images_per_second,
            "history": self.train_report_.history,
        }
        return self

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.scorer.training:  # the score is defined with running BatchNorm statistics
            self.scorer.eval()
        return self.scorer(x)

    def to(self, device: str | torch.device) -> "DeepSVDD":
        self._check_fitted()
        self.scorer.to(device)
        return self

    # --- save / load ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write detector.safetensors (network, centre) and detector.json (config, statistics)."""
        self._check_fitted()
        return write_checkpoint(path, self.scorer.state_dict(), detector_meta(self, self.config.to_dict()))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "DeepSVDD":
        meta, tensors = read_checkpoint(path, cls.name)
        config = config_from_meta(DeepSVDDConfig, meta, path)
        detector = cls(config)
        if device is not None:
            detector.config.train.device = device
        detector._build(
            int(meta["in_channels"]), tuple(meta["image_size"]), resolve_device(detector.config.train.device)
        )
        load_weights(detector.scorer, tensors, path)
        detector.scorer.to(detector.device).eval()
        restore_statistics(detector, meta)
        return detector


# --- shared by the baselines -------------------------------------------------------------------------
def run_fingerprint(method: str, config: dict, in_channels: int, image_size, num_images: int) -> str:
    payload = {
        "method": method,
        "format": CHECKPOINT_FORMAT,
        "version": robustad.__version__,
        "config": {k: v for k, v in config.items() if k not in ("score", "evaluation")},
        "data": [in_channels, list(image_size), num_images],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_normal_images(normal_images, resize_to: int | None) -> torch.Tensor:
    x = to_image_tensor(normal_images, name="normal images")
    if resize_to is not None and tuple(x.shape[-2:]) != (resize_to, resize_to):
        x = torch.nn.functional.interpolate(x, size=(resize_to, resize_to), mode="bilinear", antialias=True).clamp(0, 1)
    return x


def split_holdout(x: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training images, held-out images), split by a seeded permutation as Cobra does."""
    n_holdout = int(round(x.shape[0] * fraction))
    if n_holdout == 0:
        return x, x[:0]
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    return x[perm[n_holdout:]], x[perm[:n_holdout]]


def calibrate(detector: BaseDetector, holdout_x: torch.Tensor, target_fpr: float) -> None:
    """Threshold at the target false-positive rate on held-out normals, plus centre/scale for attacks."""
    if holdout_x.shape[0] == 0:
        detector.threshold_ = float("nan")
        detector.score_center_, detector.score_scale_ = 0.0, 1.0
        return
    scores = detector.score(holdout_x).double()
    detector.threshold_ = float(torch.quantile(scores, 1.0 - target_fpr))
    detector.score_center_ = float(scores.median())
    detector.score_scale_ = float(scores.std()) if scores.numel() > 1 and scores.std() > 0 else 1.0


def detector_meta(detector: BaseDetector, config: dict, **extra: Any) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": "robustad-detector",
        "method": detector.name,
        "robustad_version": robustad.__version__,
        "config": config,
        **extra,
        "in_channels": detector.in_channels_,
        "image_size": list(detector.image_size_),
        "threshold": detector.threshold_,
        "score_center": detector.score_center_,
        "score_scale": detector.score_scale_,
        "fit_info": detector.fit_info_,
        "library_versions": library_versions(),
    }


def write_checkpoint(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """detector.safetensors + detector.json, each replaced atomically."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path / WEIGHTS_FILE)
    (path / (META_FILE + ".tmp")).write_text(json.dumps(meta, indent=2, default=float))
    os.replace(path / (META_FILE + ".tmp"), path / META_FILE)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """detector.json of a detector folder, checked to be one (any method)."""
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
    if not isinstance(meta, dict) or meta.get("kind") != "robustad-detector":
        raise CheckpointError(f"{meta_path} does not describe a robustad detector (no kind: robustad-detector)")
    return meta


def read_checkpoint(path: str | Path, method: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(meta, tensors) of a `method` checkpoint; CheckpointError for anything else."""
    path = Path(path)
    meta = read_meta(path)
    if meta.get("method") != method:
        raise CheckpointError(
            f"{path} holds a {meta.get('method', 'unknown')!r} checkpoint, not a {method!r} one; "
            "robustad.methods.registry.load_detector picks the right class by itself"
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {meta.get('format')} (written by robustad "
            f"{meta.get('robustad_version')}); this robustad {robustad.__version__} reads format "
            f"{CHECKPOINT_FORMAT}. Re-train, or install the robustad version that wrote it."
        )
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path / WEIGHTS_FILE} is not a readable safetensors file ({err})") from None
    return meta, tensors


def config_from_meta(cls, meta: dict[str, Any], path, key: str = "config"):
    try:
        return cls.from_dict(meta[key], source=str(Path(path) / META_FILE))
    except (robustad.ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: its {key} does not fit this robustad version: {err}") from None


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], path) -> None:
    try:
        module.load_state_dict(tensors)
    except RuntimeError as err:
        first = " ".join(str(err).splitlines()[0:3])
        raise CheckpointError(
            f"{Path(path) / WEIGHTS_FILE} does not match the config in {Path(path) / META_FILE} ({first}); "
            "the two files come from different runs"
        ) from None


def restore_statistics(detector: BaseDetector, meta: dict[str, Any]) -> None:
    detector.threshold_ = meta["threshold"] if meta.get("threshold") is not None else float("nan")
    detector.score_center_ = meta.get("score_center", 0.0)
    detector.score_scale_ = meta.get("score_scale", 1.0)
    detector.fit_info_ = meta.get("fit_info", {})
