"""ImageNet-30 as distributed for one-class anomaly detection (folders of JPEG files).

Thirty ImageNet classes, one folder per class in a training and a test folder. Images
differ in size, so every image is resized (bilinear, antialiased) to ``image_size``
(224 by default) as it is read, giving float32 ``[N, 3, S, S]`` in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustad.data.folder import IMAGE_EXTENSIONS, read_image
from robustad.data.formats.base import ClassData, ClassFormat
from robustad.data.formats._classdata import PathLike, check_image_size, class_data, not_found, resolve_root
from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["ImageNet30Format", "CLASS_NAMES", "DEFAULT_SIZE", "LAYOUT", "NAME", "check", "class_names", "load"]

NAME = "imagenet30"
DEFAULT_SIZE = 224
SPLIT_FOLDERS = (("one_class_train", "one_class_test"), ("train", "test"))

LAYOUT = f"""\
<root>/one_class_train/<class>/**/*.JPEG   (training images; nested folders are searched)
<root>/one_class_test/<class>/**/*.JPEG    (test images; same class folders as training)
The folders may also be named train/ and test/. Classes are the training folder's
subfolders, sorted by name. Without --root, <root> is <robustad cache>/{NAME}.
"""


def split_folders(root: PathLike | None = None) -> tuple[Path, Path]:
    """``(train folder, test folder)``: the ``one_class_*`` pair if present, else ``train``/``test``."""
    base = resolve_root(root, NAME)
    for train, test in SPLIT_FOLDERS:
        if (base / train).is_dir() or (base / test).is_dir():
            return base / train, base / test
    return base / SPLIT_FOLDERS[0][0], base / SPLIT_FOLDERS[0][1]


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder`` (hidden files and folders skipped), sorted by path."""
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            found.append(p)
    return sorted(found)


def class_names(root: PathLike | None = None) -> tuple[str, ...]:
    """The class names: the training folder's subfolders, sorted."""
    train, _ = split_folders(root)
    if not train.is_dir():
        raise DatasetNotFoundError("ImageNet-30: " + not_found("folder", train, LAYOUT))
    names = _subfolders(train)
    if not names:
        raise DataError(f"ImageNet-30: '{train}' has no class folders; expected layout:\n{LAYOUT.rstrip()}")
    return tuple(names)


CLASS_NAMES = class_names  # the names come from disk


def _class_mismatch(train: Path, test: Path, train_names: list[str], test_names: list[str]) -> str | None:
    only_train = sorted(set(train_names) - set(test_names))
    only_test = sorted(set(test_names) - set(train_names))
    if not only_train and not only_test:
        return None
    parts = []
    if only_train:
        parts.append(f"only in '{train}': {', '.join(only_train)}")
    if only_test:
        parts.append(f"only in '{test}': {', '.join(only_test)}")
    return "ImageNet-30: the training and test folders hold different classes (" + "; ".join(parts) + ")."


def check(root: PathLike | None = None) -> list[str]:
    """Problems that stop :func:`load` (empty list: usable); lists files but decodes none."""
    train, test = split_folders(root)
    missing = [f"folder '{p}' does not exist" for p in (train, test) if not p.is_dir()]
    if missing:
        return missing + [f"expected layout:\n{LAYOUT.rstrip()}"]
    train_names, test_names = _subfolders(train), _subfolders(test)
    if not train_names:
        return [f"'{train}' has no class folders"]
    mismatch = _class_mismatch(train, test, train_names, test_names)
    if mismatch:
        return [mismatch]
    return [
        f"class folder '{folder / name}' holds no images ({', '.join(IMAGE_EXTENSIONS)})"
        for folder in (train, test)
        for name in train_names
        if not _images(folder / name)
    ]


def _read_split(folder: Path, names: tuple[str, ...], size: int) -> tuple[np.ndarray, np.ndarray]:
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(names):
        found = _images(folder / name)
        if not found:
            raise DataError(
                f"ImageNet-30: class folder '{folder / name}' holds no images "
                f"(looked recursively for {', '.join(IMAGE_EXTENSIONS)}, any case)."
            )
        files += found
        labels += [k] * len(found)
    # uint8 after resizing: the 39k training images take 5.9 GB at 224 px instead of 23 GB as floats
    x = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(files):
        x[i] = read_image(path, size=size, channels=3).mul_(255.0).round_().to(torch.uint8).numpy()
    return x, np.asarray(labels, dtype=np.int64)


def load(root: PathLike | None = None, image_size: int | None = None) -> ClassData:
    """ImageNet-30 as uint8 ``[N, 3, S, S]`` with S = ``image_size`` or 224 (each file resized as read)."""
    check_image_size(image_size)
    size = int(image_size) if image_size is not None else DEFAULT_SIZE
    train, test = split_folders(root)
    for folder in (train, test):
        if not folder.is_dir():
            raise DatasetNotFoundError("ImageNet-30: " + not_found("folder", folder, LAYOUT))
    names = class_names(root)
    mismatch = _class_mismatch(train, test, list(names), _subfolders(test))
    if mismatch:
        raise DataError(mismatch + " Both must have one folder per class, with the same names.")
    train_x, train_y = _read_split(train, names, size)
    test_x, test_y = _read_split(test, names, size)
    return class_data(train_x, train_y, test_x, test_y, names, None)


class ImageNet30Format(ClassFormat, name=NAME):
    summary = "ImageNet-30 one-class folders (one_class_train/, one_class_test/)"
    example = "robustad train --data imagenet30 --root ~/data/imagenet30 --normal-class 0 --out runs/in30-0"
    resolution = 224
    layout = LAYOUT
    aliases = ("imagenet-30",)
    check = staticmethod(check)
    arrays = staticmethod(load)
    known_size = False  # the folders' images are resized to image_size (224 unless given)
    class_names = staticmethod(class_names)
