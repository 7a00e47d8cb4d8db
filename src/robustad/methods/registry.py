"""Detectors by name, and loading a saved detector without knowing its class.

    det = load_detector("runs/digits/detector")     # a Cobra, DeepSVDD or KNNDetector
"""

from __future__ import annotations

from pathlib import Path

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
    return DETECTORS[method].load(path, device=device)
