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
