"""Shared fixtures: a tiny COBRA config and a fitted detector on scikit-learn's digits (real data)."""

from __future__ import annotations

import pytest
import torch

from robustad.data.datasets import load_split

TINY = {
    "model.width": 4,
    "model.projection_dim": 16,
    "train.epochs": 2,
    "train.batch_size": 16,
    "train.steps_per_epoch": 3,
    "train.warmup_epochs": 0,
    "adversarial.steps": 2,
    "score.batch_size": 64,
}


@pytest.fixture(scope="session")
def digits_split():
    """Digit 0 as normal; 8x8 images; a balanced 60-image test set."""
    return load_split("digits", [0], max_test=60, seed=0)


@pytest.fixture(scope="session")
def fitted_cobra(digits_split):
    from robustad import Cobra

    torch.manual_seed(0)
    return Cobra.from_preset("cpu-small", overrides=TINY).fit(digits_split.train, progress=False)


def _reseal(folder, meta=None):
    """Write detector.json (meta, or the file's own) with its checksums recomputed: a detector edited on purpose
    and made to look consistent, so that a test reaches the check behind the checksum."""
    import hashlib
    import json
    from pathlib import Path

    from robustad.methods.checkpoint import seal_meta

    folder = Path(folder)
    meta = json.loads((folder / "detector.json").read_text()) if meta is None else meta
    weights = hashlib.sha256((folder / "detector.safetensors").read_bytes()).hexdigest()
    (folder / "detector.json").write_text(json.dumps(seal_meta(meta, weights)))


@pytest.fixture
def reseal():
    return _reseal
