"""BTAD (BeanTech Anomaly Detection, Mishra et al. 2021): three industrial products, each a folder
with defect-free training images, a test set of good (``ok``) and defective (``ko``) images, and a
pixel mask for every defective test image.

The masks' file type differs between products (bitmap for some, PNG for others), so a mask is
found by the image's file stem in ``ground_truth/ko``, whatever its extension.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustad.data.anomaly import check_categories, existing_root, pick_category, root_problem
from robustad.data.formats.base import FORMATS, AnomalyFormat, Listing
from robustad.data.folder import IMAGE_EXTENSIONS, list_images
from robustad.data.splits import Item
from robustad.errors import DataError

__all__ = ["LAYOUT", "BTADFormat", "categories", "check", "items", "load"]

NAME = "btad"

LAYOUT = """\
<root>/<product>/train/ok/*.bmp            defect-free training images (<product>: 01, 02, 03)
<root>/<product>/test/ok/*.bmp             defect-free test images
<root>/<product>/test/ko/*.bmp             defective test images
<root>/<product>/ground_truth/ko/<stem>.*  mask of test/ko/<stem>.* (white = defect; .bmp or .png)
e.g. <root>/01/test/ko/0000.bmp has <root>/01/ground_truth/ko/0000.bmp"""

PathLike = str | os.PathLike[str]


def _images(folder: Path) -> list[Path]:
    return [p for p in list_images(folder) if not p.name.startswith(".")] if folder.is_dir() else []


def categories(root: PathLike | None) -> list[str]:
    """Product folders under ``root`` (those with a ``train`` or ``test`` folder), sorted."""
    if root is None or not Path(root).is_dir():
        return []
    return sorted(p.name for p in Path(root).iterdir()
                  if p.is_dir() and not p.name.startswith(".") and ((p / "train").is_dir() or (p / "test").is_dir()))


def _masks_by_stem(product: Path) -> dict[str, Path]:
    return {m.stem: m for m in _images(product / "ground_truth" / "ko")}


def _product_problems(product: Path) -> list[str]:
    problems = []
    for part, what in (("train/ok", "defect-free training"), ("test/ok", "defect-free test"),
                       ("test/ko", "defective test")):
        if not _images(product / part):
            problems.append(f"'{product / part}' is missing or has no images ({what} images go there; "
                            f"{', '.join(IMAGE_EXTENSIONS)})")
    masks = _masks_by_stem(product)
    unmatched = [p for p in _images(product / "test" / "ko") if p.stem not in masks]
    if unmatched:
        problems.append(f"{len(unmatched)} defective test image(s) have no mask, e.g. '{unmatched[0].name}' has "
                        f"none in '{product / 'ground_truth' / 'ko'}'")
    return problems


def check(root: PathLike | None) -> list[str]:
    """Problems that stop BTAD from loading from ``root``; an empty list means it is usable."""
    return check_categories(root, LAYOUT, categories, _product_problems, "no product folders (with train/ and test/)")


def items(root: PathLike | None, category: str | None, seed: int = 0) -> Listing:
    """The training files and test items (with masks) of one BTAD product."""
    root = existing_root(root, root_problem(root, LAYOUT), "BTAD")
    pick_category(category, categories(root), "BTAD", root)
    product = root / category
    problems = _product_problems(product)
    if problems:
        raise DataError(f"BTAD {category}: {problems[0]}.")
    masks = _masks_by_stem(product)
    test = [Item(p, 0) for p in _images(product / "test" / "ok")]
    test += [Item(p, 1, masks[p.stem]) for p in _images(product / "test" / "ko")]
    return Listing(category, _images(product / "train" / "ok"), test)


class BTADFormat(AnomalyFormat, name=NAME):
    summary = "BTAD (BeanTech): <product>/train/ok, test/ok, test/ko, ground_truth/ko"
    example = "robustad train --data btad --root ~/data/BTech_Dataset_transformed --category 01 --out runs/btad01"
    resolution = 600
    layout = LAYOUT
    aliases = ("beantech",)
    preset_by_size = True
    check = staticmethod(check)
    categories = staticmethod(categories)
    items = staticmethod(items)

    def training_folder(self, root, category, normal_dir=None):
        return None if root is None or category is None else Path(root) / category / "train" / "ok"


load = FORMATS[NAME].load  # the registered instance
