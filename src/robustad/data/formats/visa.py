"""VisA (Visual Anomaly data set) with its one-class split file ``split_csv/1cls.csv``.

Each CSV row names an object (the category), the split (train/test), the label
(normal/anomaly) and the image and mask paths relative to the root. Training uses the normal
training rows only (anomalous training rows, which 1cls.csv does not have, are skipped).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from robustad.data.formats.base import FORMATS, AnomalyFormat, Listing
from robustad.data.splits import Item
from robustad.data.anomaly import existing_root, pick_category, root_problem
from robustad.errors import DataError

__all__ = ["LAYOUT", "VisAFormat", "categories", "check", "items", "load"]

NAME = "visa"
SPLIT_FILE = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
SPLITS = ("train", "test")
LABELS = {"normal": 0, "anomaly": 1}

LAYOUT = """\
<root>/split_csv/1cls.csv       header object,split,label,image,mask; split train|test, label normal|anomaly
<root>/<object>/Data/Images/... the images, at the paths (relative to <root>) in the CSV's image column
<root>/<object>/Data/Masks/...  masks of the anomalous images, at the paths in the mask column
e.g. the row  candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png"""

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class _Row:
    line: int
    object: str
    split: str
    label: int
    image: str
    mask: str


def _root_problem(root: PathLike | None) -> str | None:
    problem = root_problem(root, LAYOUT)
    if problem:
        return problem
    if not (Path(root) / SPLIT_FILE).is_file():
        return f"split file '{Path(root) / SPLIT_FILE}' ({SPLIT_FILE.as_posix()}) is missing; the root must be laid out as:\n{LAYOUT}"
    return None


def _read_rows(csv_path: Path) -> tuple[list[_Row], list[str]]:
    """Parse the split file into rows, and one problem per bad line (bad rows are left out)."""
    rows, problems = [], []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[: len(COLUMNS)]] != list(COLUMNS):
                return [], [f"'{csv_path}' line 1: header is {header}, expected {','.join(COLUMNS)}"]
            for fields in reader:
                line = reader.line_num
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) < len(COLUMNS) - 1 or len(fields) > len(COLUMNS):
                    problems.append(f"'{csv_path}' line {line}: {len(fields)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})")
                    continue
                obj, split, label, image = (f.strip() for f in fields[:4])
                mask = fields[4].strip() if len(fields) == len(COLUMNS) else ""
                if split.lower() not in SPLITS:
                    problems.append(f"'{csv_path}' line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
                    continue
                if label.lower() not in LABELS:
                    problems.append(f"'{csv_path}' line {line}: label {label!r} is not one of {', '.join(LABELS)}")
                    continue
                if not obj or not image:
                    problems.append(f"'{csv_path}' line {line}: the object and image columns must not be empty")
                    continue
                rows.append(_Row(line, obj, split.lower(), LABELS[label.lower()], image, mask))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [], [f"cannot read '{csv_path}': {exc}"]
    return rows, problems


def _rows(root: Path) -> list[_Row]:
    rows, problems = _read_rows(root / SPLIT_FILE)
    if problems:
        more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
        raise DataError(f"VisA: {problems[0]}{more}; fix the split file.")
    return rows


def categories(root: PathLike | None) -> list[str]:
    """The objects named in ``split_csv/1cls.csv``, sorted ([] when the file is missing)."""
    if _root_problem(root):
        return []
    return sorted({r.object for r in _rows(Path(root))})


def check(root: PathLike | None) -> list[str]:
    """Problems that stop VisA from loading from ``root``; an empty list means it is usable."""
    problem = _root_problem(root)
    if problem:
        return [problem]
    root = Path(root)
    rows, problems = _read_rows(root / SPLIT_FILE)
    if not rows and not problems:
        problems.append(f"'{root / SPLIT_FILE}' has no rows besides the header")
    for obj in sorted({r.object for r in rows}):
        mine = [r for r in rows if r.object == obj]
        if not any(r.split == "train" and r.label == 0 for r in mine):
            problems.append(f"{obj}: no normal training rows in the split file")
        if not any(r.split == "test" for r in mine):
            problems.append(f"{obj}: no test rows in the split file")
        missing = [root / r.image for r in mine if not (root / r.image).is_file()]
        missing += [root / r.mask for r in mine if r.mask and not (root / r.mask).is_file()]
        if missing:
            problems.append(f"{obj}: {len(missing)} file(s) named in the split file are missing, e.g. '{missing[0]}'")
    return problems


def _file(root: Path, rel: str, row: _Row, what: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise DataError(f"VisA: {what} '{path}' named on line {row.line} of '{root / SPLIT_FILE}' does not exist.")
    return path


def items(root: PathLike | None, category: str | None, seed: int = 0) -> Listing:
    """The training files and test items (with masks) of one VisA object."""
    root = existing_root(root, _root_problem(root), "VisA")
    rows = _rows(root)
    cats = sorted({r.object for r in rows})
    pick_category(category, cats, "VisA", root / SPLIT_FILE, noun="object")
    train: list[Path] = []
    items: list[Item] = []
    for row in (r for r in rows if r.object == category):
        if row.split == "train":
            if row.label == 0:
                train.append(_file(root, row.image, row, "image"))
            continue
        image = _file(root, row.image, row, "image")
        if row.label == 1 and not row.mask:
            raise DataError(
                f"VisA: line {row.line} of '{root / SPLIT_FILE}' is an anomaly without a mask path; fill in the mask column."
            )
        mask = _file(root, row.mask, row, "mask") if row.mask else None
        items.append(Item(image, row.label, mask))
    return Listing(category, train, items)


class VisAFormat(AnomalyFormat, name=NAME):
    summary = "VisA with split_csv/1cls.csv"
    example = "robustad train --data visa --root ~/data/visa --category candle --out runs/candle"
    resolution = 224
    layout = LAYOUT
    preset_by_size = True
    check = staticmethod(check)
    categories = staticmethod(categories)
    items = staticmethod(items)


load = FORMATS[NAME].load  # the registered instance
