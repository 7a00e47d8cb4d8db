"""Detectors by name, and loading a saved detector without knowing its class.

    det = load_detector("runs/digits/detector")     # a Cobra, DeepSVDD or KNNDetector
"""

from __future__ import annotations

from pathlib import Path

import torch

from robustad.errors import CheckpointError
from robustad.methods.base import BaseDetector
from robustad.methods.catalog import DETECTOR_CLASSES
from robustad.methods.catalog import detector_class as _catalog_class
from robustad.methods.checkpoint import read_meta

DETECTORS: dict[str, type[BaseDetector]] = {kind: _catalog_class(kind) for kind in DETECTOR_CLASSES}


def detector_class(method: str) -> type[BaseDetector]:
    if method not in DETECTORS:
        raise CheckpointError(f"unknown detector method {method!r}; known methods: {', '.join(DETECTORS)}")
    return DETECTORS[method]


def load_detector(path: str | Path, device: str | None = None) -> BaseDetector:
    """Load a detector folder (detector.json + detector.safetensors) with the class its `method` names."""
    meta = read_meta(path)
    method = meta.get("method")
    if method not in DETECTORS:
        raise CheckpointError(
            f"{path} holds a detector of method {method!r}, which this robustad does not know; "
            f"known methods: {', '.join(DETECTORS)}"
        )
    detector = DETECTORS[method].load(path, device=device)
    _probe(detector, path)
    return detector


def _probe(detector: BaseDetector, path: str | Path) -> None:
    """Score one blank image: weights whose shapes fit load_state_dict but not each other (a bank of
    another width, say) fail here, with the folder named, rather than in the middle of a user's run."""
    blank = torch.zeros(1, int(detector.in_channels_), *detector.image_size_)
    try:
        with torch.no_grad():
            detector.score(blank)
    except (RuntimeError, IndexError, ValueError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: its weights do not fit together ({first}); the detector was edited or "
                              "damaged: copy it again or re-train it") from None
