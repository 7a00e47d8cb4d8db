"""One module per on-disk format. Each exposes ``LAYOUT`` (where the files go, for
``robustad data check`` and the README), ``check(root) -> list[str]`` (problems; empty = usable)
and ``load``:

- classification formats (normal = some classes):  ``load(root, image_size=None) -> ClassData``;
- anomaly-detection formats (normal = a category's good images):
  ``load(root, category, image_size=None, channels=None, max_train=None, max_test=None, seed=0)
  -> AnomalySplit`` and ``categories(root) -> list[str]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClassData"]


@dataclass
class ClassData:
    """A labelled classification data set as arrays (uint8 or float in [0, 1], NHWC/NCHW/NHW)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
