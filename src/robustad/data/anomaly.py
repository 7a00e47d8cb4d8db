"""Build an :class:`AnomalySplit` from lists of files: the shared back end of the loaders for
anomaly-detection data sets (MVTec AD, VisA, DAGM, ISIC, Cityscapes-style, generic folders).

A loader only parses its on-disk layout into :class:`Item` lists; reading, channel checks,
mask checks, resizing and subsampling happen here, the same way for every format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustad.data.folder import _convert_channels, _resize_one, read_image, read_mask
from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["Item", "build_anomaly_split", "existing_root", "pick_category", "require_dir", "require_file", "root_problem"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Item:
    """One test image: its file, 1 if anomalous, and its ground-truth mask file if there is one."""

    path: Path
    label: int = 0
    mask: Path | None = None


def root_problem(root: PathLike | None, layout: str) -> str | None:
    """Why ``root`` cannot hold the data set (None if it is an existing folder)."""
    if root is None:
        return f"no root given: pass --root, the folder laid out as:\n{layout}"
    if not Path(root).is_dir():
        return f"root folder '{root}' does not exist; it must be laid out as:\n{layout}"
    return None


def existing_root(root: PathLike | None, problem: str | None, label: str) -> Path:
    """``root`` as a Path, or DatasetNotFoundError with ``problem`` (from the format's root check)."""
    if problem:
        raise DatasetNotFoundError(f"{label}: {problem}")
    return Path(root)


def pick_category(category: str | None, found: list[str], label: str, where: PathLike, noun: str = "category",
                  plural: str | None = None) -> str:
    """``category`` if it is one of ``found``, else an error naming the value and listing them."""
    if category not in found:
        what = "name a category" if category is None else f"no {noun} {category!r} in '{where}'"
        plural = plural or {"category": "categories", "class": "classes"}.get(noun, noun + "s")
        raise DataError(f"{label}: {what}; {plural} found: {', '.join(found) or 'none'}.")
    return category


def require_dir(path: PathLike, what: str, hint: str = "") -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{what}: folder '{folder}' does not exist. {hint}".strip())
    return folder


def require_file(path: PathLike, what: str, hint: str = "") -> Path:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{what}: file '{file}' does not exist. {hint}".strip())
    return file


def _subsample(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray:
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def _balanced(labels: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    if k is None or k >= len(labels):
        return np.arange(len(labels))
    normals, anomalies = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    n_norm = min(k // 2, len(normals))
    n_anom = min(k - n_norm, len(anomalies))
    n_norm = min(k - n_anom, len(normals))
    pick = lambda idx, m: idx if m >= len(idx) else rng.choice(idx, size=m, replace=False)  # noqa: E731
    return np.sort(np.concatenate([pick(normals, n_norm), pick(anomalies, n_anom)]))


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
            img = _convert_channels(img, channels)
        if size is not None:
            img = _resize_one(img, size)
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
):
    """Read the files and return an AnomalySplit (masks where the items name them).

    ``max_train`` keeps a seeded random subset of the training images; ``max_test`` a seeded
    subset of the test images with up to half normal and the rest anomalous. Test images without
    a mask get an all-zero mask when any test image has one (normal images have no defect).
    """
    from robustad.data.datasets import AnomalySplit

    label = f"{name}" + (f" {category}" if category else "")
    if not train:
        raise DataError(f"{label}: no normal training images found; check the folder layout (robustad data check {name}).")
    if not test:
        raise DataError(f"{label}: no test images found; check the folder layout (robustad data check {name}).")
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    labels = np.array([it.label for it in test], dtype=np.int64)
    train_paths = [train[i] for i in _subsample(len(train), max_train, rng_train)]
    test_items = [test[i] for i in _balanced(labels, max_test, rng_test)]
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
                if it.label == 1:
                    rows.append(torch.full((1, h, w), float("nan")))  # anomalous but unlabelled at pixel level
                else:
                    rows.append(torch.zeros(1, h, w))
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
