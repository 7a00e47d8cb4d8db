"""What the baselines (Deep SVDD, kNN) share: config (de)serialisation and checks, hold-out split,
threshold calibration, and the checkpoint files (detector.safetensors + detector.json, as COBRA's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import robustad
from robustad.config import EvaluationConfig, _build, _deep_merge, _parse_overrides, config_keys, parse_eps
from robustad.data.arrays import to_image_tensor
from robustad.errors import CheckpointError, ConfigError
from robustad.methods.base import BaseDetector
from robustad.methods.cobra.detector import CHECKPOINT_FORMAT, META_FILE, WEIGHTS_FILE, library_versions

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
class BaselineScoreConfig:
    holdout_fraction: float = 0.1  # normal images held out to calibrate the threshold
    target_fpr: float = 0.05
    batch_size: int = 256



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
