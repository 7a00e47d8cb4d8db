"""Cityscapes-style out-of-distribution detection: in-distribution (ID) street scenes to train
on, and a test set of ID scenes (label 0) and out-of-distribution ones (label 1).

Images are collected recursively (Cityscapes keeps them in one subfolder per city), sorted by
their path; there are no masks and one category, "cityscapes".
"""

from __future__ import annotations

import os
from pathlib import Path

from robustad.data.formats.base import FORMATS, AnomalyFormat, Listing
from robustad.data.splits import Item
from robustad.data.anomaly import existing_root, root_problem
from robustad.data.folder import IMAGE_EXTENSIONS
from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["CityscapesFormat", "LAYOUT", "categories", "check", "items", "load"]

NAME = "cityscapes"
CATEGORY = "cityscapes"
FOLDERS = {"train ID": Path("train") / "ID", "test ID": Path("test") / "ID", "test OOD": Path("test") / "OOD"}

LAYOUT = """\
<root>/train/ID/**/*.png   in-distribution training images (subfolders allowed, e.g. one per city)
<root>/test/ID/**/*.png    in-distribution test images (normal, label 0)
<root>/test/OOD/**/*.png   out-of-distribution test images (anomalous, label 1)
e.g. <root>/train/ID/aachen/aachen_000000_000019_leftImg8bit.png"""

PathLike = str | os.PathLike[str]


def _images(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder`` (hidden files and folders skipped), sorted by path."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _root_problem(root: PathLike | None) -> str | None:
    return root_problem(root, LAYOUT)


def categories(root: PathLike | None) -> list[str]:
    """["cityscapes"] when train/ID, test/ID and test/OOD exist under ``root``, else []."""
    if _root_problem(root):
        return []
    return [CATEGORY] if all((Path(root) / rel).is_dir() for rel in FOLDERS.values()) else []


def check(root: PathLike | None) -> list[str]:
    """Problems that stop the ID/OOD folders from loading from ``root``; empty means usable."""
    problem = _root_problem(root)
    if problem:
        return [problem]
    problems = []
    for what, rel in FOLDERS.items():
        folder = Path(root) / rel
        if not folder.is_dir():
            problems.append(f"folder '{folder}' ({what} images) is missing")
        elif not _images(folder):
            problems.append(f"folder '{folder}' ({what} images) has no images ({', '.join(IMAGE_EXTENSIONS)})")
    if problems:
        problems[-1] += f"; the root must be laid out as:\n{LAYOUT}"
    return problems


def items(root: PathLike | None, category: str | None, seed: int = 0) -> Listing:
    """The ID/OOD folders: training files and test items (OOD test images are the anomalies)."""
    root = existing_root(root, _root_problem(root), "Cityscapes ID/OOD")
    if category not in (None, CATEGORY):
        raise DataError(f"Cityscapes ID/OOD: no category {category!r}; it has one, {CATEGORY!r} (or leave it out).")
    found = {}
    for what, rel in FOLDERS.items():
        folder = Path(root) / rel
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"Cityscapes ID/OOD: folder '{folder}' ({what} images) does not exist; the root must be laid out as:\n{LAYOUT}"
            )
        found[what] = _images(folder)
        if not found[what]:
            raise DataError(
                f"Cityscapes ID/OOD: no images under '{folder}' ({what} images); looked recursively for "
                f"{', '.join(IMAGE_EXTENSIONS)}."
            )
    items = [Item(p, 0) for p in found["test ID"]] + [Item(p, 1) for p in found["test OOD"]]
    return Listing(CATEGORY, found["train ID"], items)


class CityscapesFormat(AnomalyFormat, name=NAME):
    summary = "Cityscapes-style ID/OOD folders: train/ID, test/ID, test/OOD"
    example = "robustad train --data cityscapes --root ~/data/cityscapes-ood --out runs/city"
    resolution = 224
    layout = LAYOUT
    needs_category = False
    check = staticmethod(check)
    categories = staticmethod(categories)
    items = staticmethod(items)


load = FORMATS[NAME].load  # the registered instance
