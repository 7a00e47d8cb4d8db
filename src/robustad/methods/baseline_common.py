"""What the baselines (Deep SVDD, kNN) share: the checks of their score sections, and,
with COBRA, input loading and the hold-out split. Checkpoint files and calibration, shared with COBRA too,
are in robustad.methods.checkpoint.
"""

from __future__ import annotations

import torch

from robustad.config import MAX_IMAGE_SIZE, CalibrationConfig, EvaluationConfig, check_upper_bound, parse_eps
from robustad.data.arrays import to_image_tensor
from robustad.errors import ConfigError, DataError

# --- config -----------------------------------------------------------------------------------------
def check_score_config(s: CalibrationConfig, image_size: int | None) -> None:
    if not 0.0 < s.target_fpr < 1.0:
        raise ConfigError(f"score.target_fpr must be in (0, 1), got {s.target_fpr}")
    if not 0.0 <= s.holdout_fraction < 1.0:
        raise ConfigError(f"score.holdout_fraction must be in [0, 1), got {s.holdout_fraction}")
    if s.batch_size < 1:
        raise ConfigError(f"score.batch_size must be >= 1, got {s.batch_size}")
    if image_size is not None and image_size < 8:
        raise ConfigError(f"image_size must be >= 8 pixels, got {image_size}")
    check_upper_bound("image_size", image_size, MAX_IMAGE_SIZE)


def check_evaluation_config(e: EvaluationConfig) -> None:
    e.eps = parse_eps(e.eps, "evaluation.eps")
    if e.steps < 1:
        raise ConfigError(f"evaluation.steps must be >= 1, got {e.steps}")


def check_shared_sections(config) -> None:
    """The checks of what a method's config takes from the preset's Budget: its seed (where it has one of its
    own), image size, score (hold-out and threshold) and evaluation sections."""
    if getattr(config, "seed", 0) < 0:
        raise ConfigError(f"seed must be >= 0, got {config.seed}")
    check_score_config(config.score, config.image_size)
    check_evaluation_config(config.evaluation)


# --- shared by the baselines -------------------------------------------------------------------------
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


def fit_images(detector, normal_images, holdout_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a detector's fit starts from: (all images, training part, held-out part), the images
    resized to the detector's size; at least 2 training images; the detector's input shape recorded."""
    x = load_normal_images(normal_images, detector.resize_to)
    train_x, holdout_x = split_holdout(x, holdout_fraction, seed)
    if train_x.shape[0] < 2:
        raise DataError(f"need at least 2 normal training images, got {train_x.shape[0]}")
    detector.in_channels_, detector.image_size_ = x.shape[1], tuple(x.shape[-2:])
    return x, train_x, holdout_x
