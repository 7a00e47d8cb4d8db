"""DAGM 2007 (weakly supervised defect detection on textured surfaces), classes Class1..Class10.

Each ``Train`` and ``Test`` folder has ``Label/Labels.txt``: a header line (the number 1), then
one line per image, separated by whitespace::

    <index> <defect flag 0|1> <image file> 0 <mask file, only on defective lines>

Training uses the defect-free ``Train`` images only (defective training images are dropped);
the test set is every ``Test`` image, labelled by its flag, with the elliptic defect masks from
``Label/`` (any non-zero pixel is defect).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from robustad.data.formats.base import FORMATS, AnomalyFormat, Listing
from robustad.data.splits import Item
from robustad.data.anomaly import check_categories, existing_root, pick_category, root_problem
from robustad.errors import DataError

__all__ = ["DAGMFormat", "LAYOUT", "categories", "check", "items", "load", "read_labels"]

NAME = "dagm"
SPLITS = ("Train", "Test")
_CLASS = re.compile(r"^class(\d+)$", re.IGNORECASE)

LAYOUT = """\
<root>/Class<N>/Train/*.PNG                      training images (those flagged defective are not used)
<root>/Class<N>/Train/Label/Labels.txt           header line '1', then: index flag(0|1) image 0 [mask]
<root>/Class<N>/Train/Label/<stem>_label.PNG     masks of the defective images
<root>/Class<N>/Test/*.PNG, Test/Label/...       the same for the test images
e.g. Labels.txt lines '1<TAB>0<TAB>0001.PNG<TAB>0<TAB>' and '2<TAB>1<TAB>0002.PNG<TAB>0<TAB>0002_label.PNG'"""

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Label:
    """One line of a DAGM ``Labels.txt``."""

    line: int
    defect: int
    image: str
    mask: str | None


def read_labels(path: PathLike) -> list[Label]:
    """Parse a DAGM ``Labels.txt``; a malformed line is a :class:`DataError` naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"DAGM: cannot read '{path}': {exc}.") from exc
    labels = []
    for number, text in enumerate(lines, start=1):
        fields = text.split()
        if not fields:
            continue
        if not labels and len(fields) == 1 and fields[0].isdigit():
            continue  # the header line (the number 1)
        if len(fields) not in (4, 5) or fields[1] not in ("0", "1"):
            raise DataError(
                f"DAGM: '{path}' line {number}: {text.strip()!r} is not "
                "'<index> <defect flag 0|1> <image file> 0 [<mask file>]'."
            )
        defect = int(fields[1])
        mask = fields[4] if len(fields) == 5 else None
        if defect and mask is None:
            raise DataError(f"DAGM: '{path}' line {number}: image {fields[2]} is flagged defective but names no mask file.")
        labels.append(Label(number, defect, fields[2], mask if defect else None))
    return labels


def _class_number(name: str) -> int:
    match = _CLASS.match(name)
    return int(match.group(1)) if match else -1


def categories(root: PathLike | None) -> list[str]:
    """The ``Class<N>`` folders under ``root``, in the order of N."""
    if root is None or not Path(root).is_dir():
        return []
    found = [p.name for p in Path(root).iterdir() if p.is_dir() and _class_number(p.name) >= 0]
    return sorted(found, key=lambda n: (_class_number(n), n))


def _root_problem(root: PathLike | None) -> str | None:
    return root_problem(root, LAYOUT)


def _split(cat_dir: Path, split: str) -> list[tuple[Path, Label, Path | None]]:
    """(image, label line, mask) for each image named in ``<split>/Label/Labels.txt``."""
    folder = cat_dir / split
    if not folder.is_dir():
        raise DataError(f"DAGM {cat_dir.name}: folder '{folder}' does not exist; the {split} images go there.")
    labels_file = folder / "Label" / "Labels.txt"
    if not labels_file.is_file():
        raise DataError(
            f"DAGM {cat_dir.name}: label file '{labels_file}' does not exist; it lists which {split} images are defective."
        )
    out = []
    for lab in read_labels(labels_file):
        image = folder / lab.image
        if not image.is_file():
            raise DataError(f"DAGM {cat_dir.name}: image '{image}' (line {lab.line} of '{labels_file}') does not exist.")
        mask = None
        if lab.mask is not None:
            mask = folder / "Label" / lab.mask
            if not mask.is_file():
                raise DataError(
                    f"DAGM {cat_dir.name}: mask '{mask}' (line {lab.line} of '{labels_file}') does not exist."
                )
        out.append((image, lab, mask))
    if not out:
        raise DataError(f"DAGM {cat_dir.name}: '{labels_file}' lists no images.")
    return out


def _class_problems(cat_dir: Path) -> list[str]:
    problems = []
    for split in SPLITS:
        try:
            _split(cat_dir, split)
        except DataError as exc:
            problems.append(str(exc).removeprefix(f"DAGM {cat_dir.name}: "))
    return problems


def check(root: PathLike | None) -> list[str]:
    """Problems that stop DAGM from loading from ``root``; an empty list means it is usable."""
    return check_categories(root, LAYOUT, categories, _class_problems, "no Class<N> folders")


def items(root: PathLike | None, category: str | None, seed: int = 0) -> Listing:
    """The training files and test items (with masks) of one DAGM class."""
    root = existing_root(root, _root_problem(root), "DAGM")
    cats = categories(root)
    pick_category(category, cats, "DAGM", root, noun="class")
    cat_dir = root / category
    train = [image for image, lab, _ in _split(cat_dir, "Train") if lab.defect == 0]
    items = [Item(image, lab.defect, mask) for image, lab, mask in _split(cat_dir, "Test")]
    return Listing(category, train, items)


class DAGMFormat(AnomalyFormat, name=NAME):
    summary = "DAGM 2007: ClassN/Train, ClassN/Test with Label/Labels.txt"
    example = "robustad train --data dagm --root ~/data/dagm --category Class1 --out runs/dagm1"
    resolution = 224
    layout = LAYOUT
    aliases = ("dagm2007",)
    preset_by_size = True
    check = staticmethod(check)
    categories = staticmethod(categories)
    items = staticmethod(items)


load = FORMATS[NAME].load  # the registered instance
