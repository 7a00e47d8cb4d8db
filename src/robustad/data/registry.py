"""Every data set robustad reads, found by name, and the policy that picks a preset for it.

The formats themselves are plug-ins (:mod:`robustad.data.formats`): each module there defines one
:class:`~robustad.data.formats.base.DataFormat` subclass, which registers itself. Two kinds:
- ``classes``: labelled classification sets (MNIST, CIFAR, ...). One-class: one normal class;
  unlabeled multi-class: several normal classes, labels withheld; the other classes, or another
  data set (``ood=``), are the anomalies.
- ``anomaly``: anomaly-detection sets (MVTec AD, VisA, ...): per category, normal training
  images and a test set of normal and defective images, often with masks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from robustad.config import list_presets
from robustad.data.folder import list_images
from robustad.data.formats import load_all
from robustad.data.formats.base import AnomalyFormat, ClassFormat, DataFormat
from robustad.data.splits import AnomalySplit, check_limit
from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["DATASETS", "LOW_RES_SIDE", "check_dataset", "dataset_info", "load_dataset", "preset_for",
           "probe_image_side"]

# classification sets first, then anomaly-detection sets, each in module order
DATASETS: dict[str, DataFormat] = dict(sorted(load_all().items(), key=lambda item: item[1].kind != "classes"))
_ALIASES = {alias: info.name for info in DATASETS.values() for alias in info.aliases}


def dataset_info(name: str) -> DataFormat:
    """The registered format called ``name`` (or one of its aliases, any case, _ or -)."""
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}.")
    return DATASETS[key]


def check_dataset(name: str, root: str | os.PathLike[str] | None = None) -> list[str]:
    """Problems that stop ``name`` from loading from ``root`` (empty list: it is usable)."""
    return list(dataset_info(name).check(root))


# the field's split between small and large images: test budgets are 8/255 up to this side, 2/255 above
LOW_RES_SIDE = 32


def preset_for(name: str, scale: str = "cpu", resolution: int | None = None) -> str:
    """The preset for a data set at a scale ("cpu" or "paper").

    A data set whose content is known (MNIST, CIFAR, the texture sets, ...) has a hand-made preset.
    For the layouts users fill with their own images (folder, mvtec, visa, dagm, isic) what counts
    is the images' size (``resolution``, the larger side; see :func:`probe_image_side`): images of
    at most LOW_RES_SIDE pixels get the low-resolution preset whatever the layout, so that the same
    images in a folder or in MVTec's layout get the same detector.
    """
    if scale not in ("cpu", "paper"):
        raise DataError(f"scale must be 'cpu' or 'paper', got {scale!r}")
    presets = list_presets()
    try:
        info: DataFormat | None = dataset_info(name)
    except DataError:
        info = None
    key = info.name if info is not None else name
    small = resolution is not None and resolution <= LOW_RES_SIDE
    if f"{key}-{scale}" in presets and not (info is not None and info.preset_by_size and small):
        return f"{key}-{scale}"
    if resolution is None:
        resolution = info.resolution if info is not None else 224
    low = resolution <= LOW_RES_SIDE
    return {("cpu", True): "cpu-small", ("cpu", False): "cpu-highres",
            ("paper", True): "paper-lowres", ("paper", False): "paper-highres"}[(scale, low)]


def probe_image_side(name: str, root: str | os.PathLike[str] | None = None, category: str | None = None,
                     normal_dir: str | os.PathLike[str] | None = None) -> int | None:
    """The larger side of the data set's first training image, read from its header only.

    Known for the built-in sets; read from the first file where the format names a training folder
    (folder: ``normal_dir``; MVTec AD: ``root``/``category``/train/good); None where it cannot be had
    cheaply (the caller then assumes the format's usual size).
    """
    info = dataset_info(name)
    if info.known_size:
        return info.resolution
    folder = info.training_folder(root, category, normal_dir)
    if folder is None:
        return None
    try:
        files = list_images(folder)
        if files:
            with Image.open(files[0]) as img:
                return max(img.size)
    except (DataError, OSError, Image.DecompressionBombError):
        pass  # the loader reports a broken folder properly
    return None


def load_dataset(
    name: str,
    normal_classes: int | str | Iterable[int | str] | None = None,
    root: str | os.PathLike[str] | None = None,
    category: str | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
    ood: str | None = None,
    ood_root: str | os.PathLike[str] | None = None,
    **folder_args: Any,
) -> AnomalySplit:
    """Load any registered data set as an :class:`~robustad.data.datasets.AnomalySplit`.

    classes kind: ``normal_classes`` (indices or names; several = unlabeled multi-class). With
    ``ood=NAME`` the anomalies are the test images of another data set instead of the other classes.
    anomaly kind: ``category`` (MVTec/VisA object, DAGM class, ISIC diagnosis, texture); folder
    takes ``normal_dir``, ``abnormal_dirs``, ``normal_test_dir``, ``mask_dir``.
    """
    info = dataset_info(name)
    for value, label in ((max_train, "max_train"), (max_test, "max_test"), (image_size, "image_size")):
        check_limit(value, label)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}.")
    unexpected = sorted(set(folder_args) - set(info.options))
    if unexpected:
        raise DataError(f"{info.name}: unexpected options {unexpected} (they belong to --data folder)")
    if isinstance(info, AnomalyFormat):
        if normal_classes not in (None, [], ()):
            raise DataError(f"{info.name} has categories, not numbered classes: use category (CLI: --category) "
                            "instead of normal classes")
        if ood is not None:
            raise DataError(f"{info.name} brings its own anomalies; ood= applies to classification data sets")
        if category is None and info.needs_category:
            problems = check_dataset(info.name, root)
            if problems:
                raise DatasetNotFoundError(f"{info.name} is not usable from {root}: " + "; ".join(problems)
                                           + f"\nExpected layout:\n{info.layout}")
            cats = info.categories(root)
            raise DataError(f"{info.name}: name a category (CLI: --category); found: {', '.join(cats) or 'none'}")
        return info.load(root, category, image_size=image_size, channels=channels, max_train=max_train,
                         max_test=max_test, seed=seed, **folder_args)
    assert isinstance(info, ClassFormat)
    if category is not None and normal_classes in (None, [], ()):
        normal_classes = category  # a class name given as category
    other = None
    if ood is not None:
        other = dataset_info(ood)
        if not isinstance(other, ClassFormat):
            raise DataError(f"ood={ood!r}: use a classification data set as the source of anomalies")
    return info.load(root, normal_classes, image_size=image_size, channels=channels, max_train=max_train,
                     max_test=max_test, seed=seed, ood=other, ood_root=ood_root)
