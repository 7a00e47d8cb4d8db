"""The data-format plug-in: one subclass per format, registered where it is defined.

A format says where its files go (``layout``), what stops it from loading (``check``) and how to
read it; the split itself is assembled in :mod:`robustad.data.splits`, the same way for every format:

- :class:`ClassFormat` (labelled classification sets: MNIST, CIFAR, ...): ``class_names(root)`` and
  ``arrays(root, image_size) -> ClassData``; some classes are normal, the others anomalous.
- :class:`AnomalyFormat` (anomaly-detection sets: MVTec AD, VisA, ...): ``categories(root)`` and
  ``items(root, category, seed, **options) -> Listing`` (the training files and the test items);
  generated sets (textures, surfaces) override ``load`` instead.

A subclass registers itself by naming the format: ``class MVTecFormat(AnomalyFormat, name="mvtec")``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from robustad.data.arrays import to_image_tensor
from robustad.data.splits import AnomalySplit, Item, build_anomaly_split, one_class_split, resize_square
from robustad.errors import DataError

__all__ = ["FORMATS", "AnomalyFormat", "ClassData", "ClassFormat", "DataFormat", "GeneratedFormat", "Listing"]

PathLike = str | os.PathLike[str]

FORMATS: dict[str, DataFormat] = {}


@dataclass
class ClassData:
    """A labelled classification data set as arrays (uint8 or float in [0, 1], NHWC/NCHW/NHW)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Listing:
    """What an anomaly-detection format finds on disk for one category."""

    category: str  # as the split names it (the folder's name for --data folder)
    train: Sequence[Path]
    test: Sequence[Item]


class DataFormat:
    """What every format declares. Class attributes describe it for ``robustad data list`` and the presets."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "classes" | "anomaly"
    summary: ClassVar[str]
    example: ClassVar[str]  # a CLI line that trains on it
    resolution: ClassVar[int]  # typical image side in pixels; picks the preset when no hand-made one exists
    layout: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    fetch_command: ClassVar[str | None] = None  # how robustad gets it, where it can
    built_in: ClassVar[bool] = False  # ships with the installed libraries: nothing to fetch
    semi_synthetic: ClassVar[bool] = False
    # the images' size is known from the format (True) or must be read from the user's files (False)
    known_size: ClassVar[bool] = True
    # users fill this layout with their own images: small images get the small-image preset, whatever the layout
    preset_by_size: ClassVar[bool] = False
    checkable: ClassVar[bool] = True  # False: its folders are only named when used (--data folder)
    options: ClassVar[tuple[str, ...]] = ()  # extra keyword arguments its load() takes

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in FORMATS:
                raise TypeError(f"two data formats are named {name!r}")
            cls.name = name
            FORMATS[name] = cls()

    def check(self, root: PathLike | None) -> list[str]:  # pragma: no cover - every format has its own
        """Problems that stop the format loading from ``root`` (empty: usable)."""
        raise NotImplementedError

    def fetch(self, root: PathLike | None = None) -> str | None:
        """Get the data where robustad can and say where it is; None where it cannot be fetched."""
        if self.built_in:
            return f"{self.name} ships with the installed libraries; nothing to fetch"
        return None

    def training_folder(self, root: PathLike | None, category: str | None,
                        normal_dir: PathLike | None = None) -> Path | None:
        """A folder whose first image shows the training images' size (None: not known cheaply)."""
        return None

    def load(self, root: PathLike | None, normal: Any, image_size: int | None = None, channels: int | None = None,
             max_train: int | None = None, max_test: int | None = None, seed: int = 0,
             **options: Any) -> AnomalySplit:  # pragma: no cover - implemented by the two kinds
        raise NotImplementedError


class ClassFormat(DataFormat):
    """A labelled classification set: normal = some of its classes."""

    kind = "classes"

    def class_names(self, root: PathLike | None = None) -> tuple[str, ...]:  # pragma: no cover
        raise NotImplementedError

    def arrays(self, root: PathLike | None = None, image_size: int | None = None) -> ClassData:  # pragma: no cover
        raise NotImplementedError

    def load(self, root: PathLike | None, normal: int | str | Iterable[int | str] | None,
             image_size: int | None = None, channels: int | None = None, max_train: int | None = None,
             max_test: int | None = None, seed: int = 0, ood: ClassFormat | None = None,
             ood_root: PathLike | None = None) -> AnomalySplit:
        """Normal = the classes ``normal`` (indices or names; several = unlabeled multi-class); the
        anomalies are the other classes' test images, or with ``ood`` the test images of another set."""
        data = self.arrays(root, image_size=image_size)
        classes = class_indices(normal, data.class_names, self.name)
        if ood is None:
            split = one_class_split(data.train_x, data.train_y, data.test_x, data.test_y, classes, name=self.name,
                                    max_train=max_train, max_test=max_test, seed=seed)
        else:
            split = _with_ood(data, classes, self.name, ood, ood_root, max_train, max_test, seed, image_size)
        if channels is not None and split.train.shape[1] != channels:
            split.train, split.test = to_channels(split.train, channels), to_channels(split.test, channels)
        if image_size is not None:
            split.train, split.test = resize_square(split.train, image_size), resize_square(split.test, image_size)
        return split


def known_category(format_name: str, categories: Sequence[str], category: str) -> str:
    """``category`` in canonical form, or a one-line error listing the categories."""
    key = str(category).strip().lower()
    if key not in categories:
        raise DataError(f"{format_name}: unknown category {category!r}; the categories are {list(categories)}.")
    return key


def class_indices(values: int | str | Iterable[int | str] | None, names: tuple[str, ...], dataset: str) -> list[int]:
    """Class indices from indices or names, with errors that list the classes."""
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


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[N, C, H, W] -> 3 channels (grey repeated) or 1 (ITU-R BT.601 luma)."""
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * luma).sum(1, keepdim=True)


def _with_ood(data, classes, name, ood, ood_root, max_train, max_test, seed, image_size):
    """Normal = the chosen classes of `data` (all of them is fine); anomalies = the test images of
    another data set, brought to the same size and channel count."""
    rng_train, rng_test, rng_ood = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    ytr, yte = np.asarray(data.train_y), np.asarray(data.test_y)
    train_idx = np.flatnonzero(np.isin(ytr, classes))
    test_idx = np.flatnonzero(np.isin(yte, classes))
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise DataError(f"{name}: classes {classes} have no training or no test images")
    odata = ood.arrays(ood_root, image_size=None)
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
    anomalies = to_image_tensor(np.asarray(odata.test_x)[ood_idx], f"{ood.name} test images")
    size = image_size or normal_test.shape[-1]
    train, normal_test, anomalies = (resize_square(t, size) for t in (train, normal_test, anomalies))
    if anomalies.shape[1] != normal_test.shape[1]:
        anomalies = to_channels(anomalies, normal_test.shape[1])
    test = torch.cat([normal_test, anomalies])
    labels = torch.cat([torch.zeros(len(normal_test), dtype=torch.long), torch.ones(len(anomalies), dtype=torch.long)])
    return AnomalySplit(train, test, labels, f"{name} vs {ood.name}", tuple(sorted(set(classes))))


class AnomalyFormat(DataFormat):
    """An anomaly-detection set: per category, normal training images and a labelled test set."""

    kind = "anomaly"
    known_size = False
    needs_category = True  # False: a default category exists (folder: the normal folder's name)

    def categories(self, root: PathLike | None) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def items(self, root: PathLike | None = None, category: str | None = None, seed: int = 0,
              **options: Any) -> Listing:  # pragma: no cover - file formats implement it
        raise NotImplementedError

    def load(self, root: PathLike | None = None, category: str | None = None, image_size: int | None = None,
             channels: int | None = None, max_train: int | None = None, max_test: int | None = None,
             seed: int = 0, **options: Any) -> AnomalySplit:
        """One category as an :class:`AnomalySplit`, read from the files that :meth:`items` lists."""
        found = self.items(root, category, seed=seed, **options)
        return build_anomaly_split(self.name, found.category, found.train, found.test, image_size=image_size,
                                   channels=channels, max_train=max_train, max_test=max_test, seed=seed,
                                   semi_synthetic=self.semi_synthetic)


class GeneratedFormat(AnomalyFormat):
    """A semi-synthetic set generated in memory from photographs that ship with a library: defects
    drawn on crops (textures, surfaces). ``generate`` is the module's function that draws one category."""

    resolution = 64
    built_in = True
    semi_synthetic = True
    known_size = True
    needs_category = False  # the first category when none is named
    options = ("crop_size", "n_train", "n_test_normal", "n_test_anomalous")
    category_names: ClassVar[tuple[str, ...]]
    photo: Callable[[str], np.ndarray]  # reads (and caches) one category's photograph
    generate: Callable[..., AnomalySplit]

    def categories(self, root: PathLike | None = None) -> list[str]:
        """The categories (``root`` is ignored: the photographs ship with a library)."""
        return list(self.category_names)

    def check(self, root: PathLike | None = None) -> list[str]:
        """Problems that keep the set from loading (empty when it is usable); ``root`` is ignored."""
        try:
            for category in self.category_names:
                self.photo(category)
        except DataError as err:
            return [str(err)]
        except Exception as err:  # noqa: BLE001 - report whatever broke reading the bundled files
            return [f"{self.name}: cannot read scikit-image's bundled photographs ({type(err).__name__}: {err})."]
        return []

    def load(self, root: PathLike | None = None, category: str | None = None, image_size: int | None = None,
             channels: int | None = None, max_train: int | None = None, max_test: int | None = None,
             seed: int = 0, **options: Any) -> AnomalySplit:
        category = self.categories(root)[0] if category is None else category
        return self.generate(root, category, image_size=image_size, channels=channels, max_train=max_train,
                             max_test=max_test, seed=seed, **options)
