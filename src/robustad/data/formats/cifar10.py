"""CIFAR-10, "python version" (the pickled batches from cifar-10-python.tar.gz).

Ten classes of 32x32 colour images; 50,000 training images in five batches and 10,000
test images. Batches are read with a restricted unpickler (see ``_pickle``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustad.data.formats.base import ClassData, ClassFormat
from robustad.data.formats._classdata import (PathLike, check_image_size, class_data, file_problems, nested_folder,
                                              require_files)
from robustad.data.formats._pickle import read_cifar_batch

__all__ = ["CIFAR10Format", "CLASS_NAMES", "LAYOUT", "NAME", "check", "load"]

NAME = "cifar10"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

LAYOUT = f"""\
<root>/{FOLDER}/data_batch_1 ... data_batch_5   (training batches)
<root>/{FOLDER}/test_batch                      (test batch)
Extract cifar-10-python.tar.gz into <root>; --root may also be the {FOLDER} folder itself.
Without --root, <root> is <robustad cache>/{NAME}.
"""


def batch_folder(root: PathLike | None = None) -> Path:
    """The folder holding the batches: ``<root>/cifar-10-batches-py``, or ``root`` itself."""
    return nested_folder(root, NAME, FOLDER, TRAIN_FILES + TEST_FILES)


def check(root: PathLike | None = None) -> list[str]:
    """Problems that stop :func:`load` (empty list: usable). Only checks that the files exist."""
    return file_problems(batch_folder(root), TRAIN_FILES + TEST_FILES, LAYOUT)


def _read(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_cifar_batch(folder / name, b"labels", len(CLASS_NAMES)) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load(root: PathLike | None = None, image_size: int | None = None) -> ClassData:
    """CIFAR-10 as uint8 ``[N, 3, 32, 32]`` (float in [0, 1] if resized to ``image_size``)."""
    check_image_size(image_size)
    folder = batch_folder(root)
    require_files(folder, TRAIN_FILES + TEST_FILES, LAYOUT, "CIFAR-10")
    train_x, train_y = _read(folder, TRAIN_FILES)
    test_x, test_y = _read(folder, TEST_FILES)
    return class_data(train_x, train_y, test_x, test_y, CLASS_NAMES, image_size)


class CIFAR10Format(ClassFormat, name=NAME):
    summary = "CIFAR-10, python pickle batches (cifar-10-batches-py)"
    example = "robustad train --data cifar10 --root ~/data --normal-class 0 --out runs/cifar0"
    resolution = 32
    layout = LAYOUT
    aliases = ("cifar-10",)
    check = staticmethod(check)
    arrays = staticmethod(load)

    def class_names(self, root=None) -> tuple[str, ...]:
        return CLASS_NAMES
