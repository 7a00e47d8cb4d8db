"""One-class anomaly detection splits built from labelled classification data.

The usual protocol: some classes are "normal"; the detector trains on normal
training images only and is tested on the whole test set, where every image of
another class is an anomaly (label 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from robustad.data.arrays import to_image_tensor
from robustad.errors import DataError

__all__ = ["AnomalySplit", "available_datasets", "load_split", "one_class_split"]

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0  # fixed, so the digits train/test partition never changes

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class AnomalySplit:
    """Training images (normal only) and a labelled test set (1 = anomaly, 0 = normal)."""

    train: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    name: str
    normal_classes: tuple[int, ...] = ()
    category: str | None = None  # anomaly-detection sets: the object/texture/class of this run
    test_masks: torch.Tensor | None = None  # [N, 1, H, W] in {0, 1} where ground-truth masks exist
    test_paths: list[str] | None = None
    semi_synthetic: bool = False  # test anomalies are generated, not real defects

    def describe(self, train: bool = True) -> str:
        """One line summarising sizes, image shape and the normal/anomaly balance.

        ``train=False`` leaves the training images out, for reports on detectors trained elsewhere
        (their own training sets are recorded in each detector's fit_info).
        """
        n_anom = int(self.test_labels.sum())
        n_norm = len(self.test_labels) - n_anom
        c, h, w = self.train.shape[1:]
        what = f"category {self.category}" if self.category is not None else f"normal classes {list(self.normal_classes)}"
        tag = " (semi-synthetic)" if self.semi_synthetic else ""
        if not train:
            c, h, w = self.test.shape[1:]
            return f"{self.name}{tag} {what}: test {len(self.test)} images ({n_norm} normal, {n_anom} anomalous; {c}x{h}x{w})"
        if len(self.test_labels) == 0:
            return f"{self.name}{tag} {what}: train {len(self.train)} normal images ({c}x{h}x{w}); no test set"
        return (
            f"{self.name}{tag} {what}: "
            f"train {len(self.train)} normal images ({c}x{h}x{w}); "
            f"test {len(self.test)} images ({n_norm} normal, {n_anom} anomalous)"
        )


def _labels(y: ArrayLike, name: str, n: int) -> np.ndarray:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1 or len(arr) != n or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{name} must be {n} integer class labels (one per image), got shape "
            f"{arr.shape} dtype {arr.dtype}."
        )
    return arr.astype(np.int64, copy=False)


def _length(x: ArrayLike) -> int:
    return int(x.shape[0])


def _take(x: ArrayLike, idx: np.ndarray) -> ArrayLike:
    return x[torch.from_numpy(idx)] if isinstance(x, torch.Tensor) else np.asarray(x)[idx]


def _normal_tuple(normal_classes: int | Iterable[int], valid: np.ndarray) -> tuple[int, ...]:
    raw = [normal_classes] if isinstance(normal_classes, int | np.integer) else list(normal_classes)
    if not raw:
        raise DataError("normal_classes is empty; name at least one normal class.")
    classes = tuple(sorted({int(c) for c in raw}))
    unknown = [c for c in classes if c not in set(valid.tolist())]
    if unknown:
        raise DataError(
            f"normal class(es) {unknown} do not occur in the labels; "
            f"valid classes are {valid.tolist()}."
        )
    if len(classes) == len(valid):
        raise DataError(
            f"normal_classes {list(classes)} covers every class, so nothing is anomalous; "
            "leave at least one class out."
        )
    return classes


def _check_limit(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
        raise DataError(f"{name} must be a positive integer or None, got {value!r}.")


def _subsample(idx: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    if k >= len(idx):
        return idx
    return np.sort(rng.choice(idx, size=k, replace=False))


def _balanced_test(is_anom: np.ndarray, max_test: int, rng: np.random.Generator) -> np.ndarray:
    normals, anomalies = np.flatnonzero(~is_anom), np.flatnonzero(is_anom)
    n_norm = min(max_test // 2, len(normals))
    n_anom = min(max_test - n_norm, len(anomalies))
    picked = np.concatenate([_subsample(normals, n_norm, rng), _subsample(anomalies, n_anom, rng)])
    return np.sort(picked)


def one_class_split(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    normal_classes: int | Iterable[int],
    name: str,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> AnomalySplit:
    """Build a one-class split from labelled train/test images.

    Training images are the normal-class images of ``train_x`` (a seeded random
    ``max_train`` of them if given). The test set is all of ``test_x``, or, with
    ``max_test``, a seeded subset of up to ``max_test // 2`` normal images and
    the rest anomalies. Images may be uint8 or float in [0, 1] (see
    :func:`~robustad.data.arrays.to_image_tensor`).
    """
    _check_limit(max_train, "max_train")
    _check_limit(max_test, "max_test")
    ytr = _labels(train_y, "train_y", _length(train_x))
    yte = _labels(test_y, "test_y", _length(test_x))
    normal = _normal_tuple(normal_classes, np.union1d(ytr, yte))
    # Independent streams, so changing max_train does not change the test subset.
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    train_idx = np.flatnonzero(np.isin(ytr, normal))
    if len(train_idx) == 0:
        raise DataError(
            f"{name}: the training set has no images of normal classes {list(normal)}; "
            "choose classes that occur in the training labels."
        )
    if max_train is not None:
        train_idx = _subsample(train_idx, int(max_train), rng_train)

    is_anom = ~np.isin(yte, normal)
    test_idx = np.arange(len(yte)) if max_test is None else _balanced_test(is_anom, int(max_test), rng_test)
    labels = is_anom[test_idx]
    if labels.all() or not labels.any():
        missing = "normal" if labels.all() else "anomalous"
        raise DataError(
            f"{name}: the test set has no {missing} images for normal classes {list(normal)}, "
            "so detection cannot be scored; use other classes or a larger max_test."
        )
    return AnomalySplit(
        train=to_image_tensor(_take(train_x, train_idx), f"{name} train images"),
        test=to_image_tensor(_take(test_x, test_idx), f"{name} test images"),
        test_labels=torch.from_numpy(labels.astype(np.int64)),
        name=name,
        normal_classes=normal,
    )


# --------------------------------------------------------------------------- by name


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_split` (see ``robustad data list``)."""
    from robustad.data.registry import DATASETS

    return list(DATASETS)


def load_split(
    name: str,
    normal_classes: int | str | Iterable[int | str] | None = None,
    root: str | os.PathLike[str] | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    **options,
) -> AnomalySplit:
    """Load a named data set as an :class:`AnomalySplit`.

    Classification sets (mnist, fashion-mnist, digits, cifar10, ...) take ``normal_classes``
    (several = the unlabeled multi-class setting; ``ood=NAME`` takes the anomalies from another
    data set); anomaly-detection sets (mvtec, visa, ..., textures) take ``category=``.
    ``image_size`` resizes every image to ``image_size x image_size``. ``digits`` ships with
    scikit-learn and is split 70/30, stratified, with a fixed seed.
    """
    from robustad.data.registry import load_dataset

    _check_limit(image_size, "image_size")
    return load_dataset(name, normal_classes, root=root, max_train=max_train, max_test=max_test, seed=seed,
                        image_size=image_size, **options)
