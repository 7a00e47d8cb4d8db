"""The one place where an anomaly-detection split is assembled: what every data format hands back.

Two entry points share the subset rules (a seeded ``max_train`` subset of the training images; a
seeded ``max_test`` subset of the test images, up to half normal and the rest anomalous, topped
up from the other side when one side runs short):

- :func:`one_class_split` from labelled arrays: some classes are normal, every other class of the
  test set is an anomaly (the classification formats);
- :func:`build_anomaly_split` from files: normal training images and a list of test :class:`Item`
  (the anomaly-detection formats: MVTec AD, VisA, DAGM, ISIC, Cityscapes-style, folders).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustad.data.arrays import to_image_tensor
from robustad.data.folder import convert_channels, read_image, read_mask, resize_one
from robustad.errors import DataError

__all__ = ["AnomalySplit", "Item", "balanced_subset", "build_anomaly_split", "check_limit", "one_class_split",
           "resize_square", "subsample"]

ArrayLike = np.ndarray | torch.Tensor
PathLike = str | os.PathLike[str]


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


@dataclass(frozen=True)
class Item:
    """One test image: its file, 1 if anomalous, and its ground-truth mask file if there is one."""

    path: Path
    label: int = 0
    mask: Path | None = None


# --------------------------------------------------------------------------- subsets


def check_limit(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
        raise DataError(f"{name} must be a positive integer or None, got {value!r}.")


def subsample(idx: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """A seeded random ``k`` of ``idx`` in their original order (all of them when k is None or too large)."""
    if k is None or k >= len(idx):
        return idx
    return np.sort(rng.choice(idx, size=int(k), replace=False))


def balanced_subset(is_anomaly: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """Positions of a seeded test subset of ``k`` images: up to half normal, the rest anomalous, the
    normal side topped up when there are too few anomalies; sorted. All of them when k covers them."""
    is_anomaly = np.asarray(is_anomaly).astype(bool)
    if k is None or k >= len(is_anomaly):
        return np.arange(len(is_anomaly))
    normals, anomalies = np.flatnonzero(~is_anomaly), np.flatnonzero(is_anomaly)
    n_norm = min(k // 2, len(normals))
    n_anom = min(k - n_norm, len(anomalies))
    n_norm = min(k - n_anom, len(normals))
    return np.sort(np.concatenate([subsample(normals, n_norm, rng), subsample(anomalies, n_anom, rng)]))


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size], antialiased bilinear, clamped to [0, 1] (no-op at that size)."""
    if x.shape[-2:] == (size, size):
        return x
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- from labelled arrays


def _labels(y: ArrayLike, name: str, n: int) -> np.ndarray:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1 or len(arr) != n or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{name} must be {n} integer class labels (one per image), got shape "
            f"{arr.shape} dtype {arr.dtype}."
        )
    return arr.astype(np.int64, copy=False)


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

    Training images are the normal-class images of ``train_x`` (a seeded random ``max_train`` of
    them if given). The test set is all of ``test_x``, or, with ``max_test``, a seeded subset (see
    :func:`balanced_subset`). Images may be uint8 or float in [0, 1] (see
    :func:`~robustad.data.arrays.to_image_tensor`).
    """
    check_limit(max_train, "max_train")
    check_limit(max_test, "max_test")
    ytr = _labels(train_y, "train_y", int(train_x.shape[0]))
    yte = _labels(test_y, "test_y", int(test_x.shape[0]))
    normal = _normal_tuple(normal_classes, np.union1d(ytr, yte))
    # Independent streams, so changing max_train does not change the test subset.
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    train_idx = np.flatnonzero(np.isin(ytr, normal))
    if len(train_idx) == 0:
        raise DataError(
            f"{name}: the training set has no images of normal classes {list(normal)}; "
            "choose classes that occur in the training labels."
        )
    train_idx = subsample(train_idx, max_train, rng_train)
    is_anom = ~np.isin(yte, normal)
    test_idx = balanced_subset(is_anom, max_test, rng_test)
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


# --------------------------------------------------------------------------- from files


def _read_all(paths: Sequence[Path], size: int | None, channels: int | None, what: str) -> tuple[torch.Tensor, list]:
    images, native = [], []
    first: dict[int, Path] = {}
    for p in paths:
        img = read_image(p)  # native size first: masks are checked against it
        native.append(tuple(img.shape[1:]))
        first.setdefault(img.shape[0], p)
        if channels is None and len(first) > 1:
            raise DataError(
                f"{what}: images mix grayscale and colour ('{first[1]}' has 1 channel, '{first[3]}' has 3). "
                "Convert them, or pass channels=3 (CLI: --channels 3) to turn every image into RGB."
            )
        if channels is not None:
            img = convert_channels(img, channels)
        if size is not None:
            img = resize_one(img, size)
        images.append(img)
    if size is None:
        sizes = {tuple(i.shape[1:]) for i in images}
        if len(sizes) > 1:
            raise DataError(
                f"{what}: images have different sizes {sorted(sizes)[:4]}; pass image_size (CLI: --image-size) "
                "to resize all of them."
            )
    return torch.stack(images).contiguous(), native


def build_anomaly_split(
    name: str,
    category: str | None,
    train: Sequence[Path],
    test: Sequence[Item],
    image_size: int | None = None,
    channels: int | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    semi_synthetic: bool = False,
) -> AnomalySplit:
    """Read the files and return an AnomalySplit (masks where the items name them).

    Subsets as :func:`one_class_split`. Test images without a mask get an all-zero mask when any
    test image has one (normal images have no defect); an anomalous one without a mask gets NaN
    (not labelled at pixel level).
    """
    label = f"{name}" + (f" {category}" if category else "")
    if not train:
        raise DataError(f"{label}: no normal training images found; check the folder layout (robustad data check {name}).")
    if not test:
        raise DataError(f"{label}: no test images found; check the folder layout (robustad data check {name}).")
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    labels = np.array([it.label for it in test], dtype=np.int64)
    train_paths = [train[i] for i in subsample(np.arange(len(train)), max_train, rng_train)]
    test_items = [test[i] for i in balanced_subset(labels == 1, max_test, rng_test)]
    kept = np.array([it.label for it in test_items], dtype=np.int64)
    if kept.all() or not kept.any():
        missing = "normal" if kept.all() else "anomalous"
        hint = " Raise max_test (--max-test) to at least 2." if len(kept) < len(labels) else ""
        raise DataError(f"{label}: the test set has no {missing} images, so detection cannot be scored.{hint}")

    x_train, _ = _read_all(train_paths, image_size, channels, f"{label} training images")
    ch = x_train.shape[1]
    x_test, native = _read_all([it.path for it in test_items], image_size, channels or ch, f"{label} test images")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(
            f"{label}: test images are {tuple(x_test.shape[1:])} but training images are {tuple(x_train.shape[1:])}; "
            "pass image_size (CLI: --image-size) to bring them to one size."
        )
    masks = None
    if any(it.mask is not None for it in test_items):
        h, w = x_test.shape[-2:]
        rows = []
        for it, hw in zip(test_items, native):
            if it.mask is None:
                fill = float("nan") if it.label == 1 else 0.0  # anomalous but unlabelled at pixel level
                rows.append(torch.full((1, h, w), fill))
            else:
                rows.append(read_mask(it.mask, size=image_size, expect_hw=hw))
        masks = torch.stack(rows)
    return AnomalySplit(
        train=x_train,
        test=x_test,
        test_labels=torch.from_numpy(np.array([it.label for it in test_items], dtype=np.int64)),
        name=name,
        category=category,
        test_masks=masks,
        test_paths=[str(it.path) for it in test_items],
        semi_synthetic=semi_synthetic,
    )
