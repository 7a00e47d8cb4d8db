"""Where a result came from: the training run's identity (method, config, images), the library
versions, and the differences between two records, in words.

Training resume (a checkpoint resumes only its own run), the refusal to overwrite a finished detector
with another config, and the benchmark's staleness check all compare records with these functions.
"""

from __future__ import annotations

import hashlib
import json
import platform
from typing import Any

import numpy as np
import torch

import robustad

CHECKPOINT_FORMAT = 1  # the layout of detector folders and training checkpoints


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


def images_digest(x: torch.Tensor) -> str:
    """Content hash of a set of images: a run or detector recognises the images it was trained on."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(data.data).hexdigest()[:16]


def run_identity(method: str, config: dict, images: torch.Tensor) -> dict[str, Any]:
    """What a training run is: a checkpoint resumes only a run with the same identity.

    The score and evaluation sections are left out: they do not change training.
    """
    return {
        "method": method,
        "format": CHECKPOINT_FORMAT,
        "version": robustad.__version__,
        "config": {k: v for k, v in config.items() if k not in ("score", "evaluation")},
        "images": {"count": int(images.shape[0]), "channels": int(images.shape[1]),
                   "size": [int(images.shape[-2]), int(images.shape[-1])], "digest": images_digest(images)},
    }


def config_changes(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted fields where two configs (as JSON dicts) differ, as "field: saved -> wanted"."""
    changes = []
    for key in sorted(set(saved) | set(wanted), key=str):
        old, new = saved.get(key, "<absent>"), wanted.get(key, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            changes += config_changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old} -> {new}")
    return changes


def summarize_changes(changes: list[str], limit: int = 5) -> str:
    """The first `limit` config changes joined for a one-line message, with a count of the rest."""
    more = len(changes) - limit
    return "; ".join(changes[:limit]) + (f"; and {more} more" if more > 0 else "")


def json_form(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict as it reads back from JSON (tuples become lists), so it compares with a saved one."""
    return json.loads(json.dumps(config, default=float))
