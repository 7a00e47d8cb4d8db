"""CIFAR-100, "python version", labelled by its 20 superclasses.

The anomaly-detection literature uses the 20 coarse labels (superclasses) of CIFAR-100 as
the classes, so ``load`` returns ``coarse_labels``; the 100 fine labels are not used.
"""

from __future__ import annotations

from pathlib import Path

from robustad.data.formats.base import ClassData, ClassFormat
from robustad.data.formats._classdata import (PathLike, check_image_size, class_data, file_problems, nested_folder,
                                              require_files)
from robustad.data.formats._pickle import read_cifar_batch

__all__ = ["CIFAR100Format", "CLASS_NAMES", "LAYOUT", "NAME", "check", "load"]

NAME = "cifar100"
FOLDER = "cifar-100-python"
FILES = ("train", "test")
LABEL_KEY = b"coarse_labels"

CLASS_NAMES = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)

LAYOUT = f"""\
<root>/{FOLDER}/train   (training set, 50,000 images)
<root>/{FOLDER}/test    (test set, 10,000 images)
Extract cifar-100-python.tar.gz into <root>; --root may also be the {FOLDER} folder itself.
Classes are the 20 superclasses (coarse labels). Without --root, <root> is <robustad cache>/{NAME}.
"""


def batch_folder(root: PathLike | None = None) -> Path:
    """The folder holding ``train`` and ``test``: ``<root>/cifar-100-python``, or ``root`` itself."""
    return nested_folder(root, NAME, FOLDER, FILES)


def check(root: PathLike | None = None) -> list[str]:
    """Problems that stop :func:`load` (empty list: usable). Only checks that the files exist."""
    return file_problems(batch_folder(root), FILES, LAYOUT)


def load(root: PathLike | None = None, image_size: int | None = None) -> ClassData:
    """CIFAR-100 (20 superclasses) as uint8 ``[N, 3, 32, 32]`` (float if resized)."""
    check_image_size(image_size)
    folder = batch_folder(root)
    require_files(folder, FILES, LAYOUT, "CIFAR-100")
    train_x, train_y = read_cifar_batch(folder / "train", LABEL_KEY, len(CLASS_NAMES))
    test_x, test_y = read_cifar_batch(folder / "test", LABEL_KEY, len(CLASS_NAMES))
    return class_data(train_x, train_y, test_x, test_y, CLASS_NAMES, image_size)


class CIFAR100Format(ClassFormat, name=NAME):
    summary = "CIFAR-100 by its 20 superclasses, python pickles (cifar-100-python)"
    example = "robustad train --data cifar100 --root ~/data --normal-class 4 --out runs/cifar100-4"
    resolution = 32
    layout = LAYOUT
    aliases = ("cifar-100",)
    check = staticmethod(check)
    arrays = staticmethod(load)

    def class_names(self, root=None) -> tuple[str, ...]:
        return CLASS_NAMES
