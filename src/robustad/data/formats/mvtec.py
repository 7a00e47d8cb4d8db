"""MVTec AD: one folder per category with defect-free training images, a test set of good and
defective images, and a pixel mask for every defective test image.

Test images in ``test/good`` are normal (label 0, all-zero mask); every other folder under
``test`` is a defect type (label 1) whose masks are ``ground_truth/<defect>/<stem>_mask.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustad.data.anomaly import check_categories, existing_root, pick_category, root_problem
from robustad.data.formats.base import FORMATS, AnomalyFormat, Listing
from robustad.data.folder import IMAGE_EXTENSIONS, list_images
from robustad.data.splits import Item
from robustad.errors import DataError

__all__ = ["LAYOUT", "MVTecFormat", "categories", "check", "items", "load"]

NAME = "mvtec"
GOOD = "good"

LAYOUT = """\
<root>/<category>/train/good/*.png                      defect-free training images
<root>/<category>/test/good/*.png                       defect-free test images
<root>/<category>/test/<defect>/*.png                   defective test images, one folder per defect type
<root>/<category>/ground_truth/<defect>/<stem>_mask.png mask of test/<defect>/<stem>.png (white = defect)
e.g. <root>/bottle/test/broken_large/000.png has <root>/bottle/ground_truth/broken_large/000_mask.png
(a category without ground_truth/ is evaluated at the image level only)"""

PathLike = str | os.PathLike[str]


def _images(folder: Path) -> list[Path]:
    return [p for p in list_images(folder) if not p.name.startswith(".")]


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def categories(root: PathLike | None) -> list[str]:
    """Category folders under ``root`` (those with a ``train`` or ``test`` folder), sorted."""
    if root is None or not Path(root).is_dir():
        return []
    return [p.name for p in _subdirs(Path(root)) if (p / "train").is_dir() or (p / "test").is_dir()]


def _mask_path(cat_dir: Path, defect: str, image: Path) -> Path:
    return cat_dir / "ground_truth" / defect / f"{image.stem}_mask.png"


def _root_problem(root: PathLike | None) -> str | None:
    return root_problem(root, LAYOUT)


def _category_problems(cat_dir: Path) -> list[str]:
    problems = []
    good = cat_dir / "train" / GOOD
    if not good.is_dir():
        problems.append(f"'{good}' is missing (defect-free training images go there)")
    elif not _images(good):
        problems.append(f"'{good}' has no images ({', '.join(IMAGE_EXTENSIONS)})")
    test = cat_dir / "test"
    if not test.is_dir():
        problems.append(f"'{test}' is missing (test/good and test/<defect> folders go there)")
        return problems
    if not (test / GOOD).is_dir() or not _images(test / GOOD):
        problems.append(f"'{test / GOOD}' is missing or has no images (defect-free test images go there)")
    defects = [d for d in _subdirs(test) if d.name != GOOD]
    if not defects:
        problems.append(f"'{test}' has no defect folders besides 'good' (test/<defect>/*.png)")
    missing = [_mask_path(cat_dir, d.name, img) for d in defects for img in _images(d)]
    missing = [m for m in missing if not m.is_file()]
    if missing and (cat_dir / "ground_truth").is_dir():  # without ground_truth/ at all: image-level only
        problems.append(f"{len(missing)} defective test image(s) in '{test}' have no mask, e.g. '{missing[0]}' is missing")
    return problems


def check(root: PathLike | None) -> list[str]:
    """Problems that stop MVTec AD from loading from ``root``; an empty list means it is usable."""
    return check_categories(root, LAYOUT, categories, _category_problems,
                            "no category folders (with train/ and test/)")


def items(root: PathLike | None, category: str | None, seed: int = 0) -> Listing:
    """The training files and test items (with masks) of one MVTec AD category."""
    root = existing_root(root, _root_problem(root), "MVTec AD")
    cats = categories(root)
    pick_category(category, cats, "MVTec AD", root)
    cat_dir = root / category
    good = cat_dir / "train" / GOOD
    if not good.is_dir():
        raise DataError(f"MVTec AD {category}: folder '{good}' does not exist; defect-free training images go there.")
    train = _images(good)
    if not train:
        raise DataError(f"MVTec AD {category}: no images in '{good}'; defect-free training images go there.")
    test_dir = cat_dir / "test"
    if not test_dir.is_dir():
        raise DataError(f"MVTec AD {category}: folder '{test_dir}' does not exist; test/good and test/<defect> go there.")
    test: list[Item] = []
    for sub in _subdirs(test_dir):
        if sub.name == GOOD:
            test += [Item(p, 0) for p in _images(sub)]
            continue
        for img in _images(sub):
            mask = _mask_path(cat_dir, sub.name, img)
            if not (cat_dir / "ground_truth").is_dir():  # no masks at all: image-level evaluation only
                test.append(Item(img, 1))
                continue
            if not mask.is_file():
                raise DataError(
                    f"MVTec AD {category}: defective test image '{img}' has no mask; expected '{mask}' "
                    f"(or remove '{cat_dir / 'ground_truth'}' to evaluate at the image level only)."
                )
            test.append(Item(img, 1, mask))
    return Listing(category, train, test)


class MVTecFormat(AnomalyFormat, name=NAME):
    summary = "MVTec AD: <category>/train/good, test/<defect>, ground_truth/<defect>"
    example = "robustad train --data mvtec --root ~/data/mvtec --category bottle --out runs/bottle"
    resolution = 224
    layout = LAYOUT
    aliases = ("mvtec-ad",)
    preset_by_size = True
    check = staticmethod(check)
    categories = staticmethod(categories)
    items = staticmethod(items)

    def training_folder(self, root, category, normal_dir=None):
        return None if root is None or category is None else Path(root) / category / "train" / GOOD


load = FORMATS[NAME].load  # the registered instance
