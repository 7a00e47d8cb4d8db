"""ISIC 2018 task 3 (skin lesion diagnosis, 7 classes) as one-class anomaly detection.

The "category" is the diagnosis treated as normal (one of MEL, NV, BCC, AKIEC, BKL, DF, VASC;
NV, the common benign nevus, is the usual choice). Training uses the training images with that
diagnosis. The test set is the ``Test`` split when its ground-truth CSV is there, else the
``Validation`` split, each image labelled 0 if it has the normal diagnosis and 1 otherwise.
When neither is there, a seeded 20% of each diagnosis of the training split is held out as the
test set (the ``seed`` argument picks it, so different seeds give different partitions) and
the normal diagnosis's remaining 80% is the training set. There are no masks.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from robustad.data.formats.base import FORMATS, AnomalyFormat, Listing
from robustad.data.splits import Item
from robustad.data.anomaly import existing_root, root_problem
from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["ISICFormat", "LAYOUT", "categories", "check", "items", "load"]

NAME = "isic"
HOLDOUT_FRACTION = 0.2
DIAGNOSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")

LAYOUT = """\
<root>/ISIC2018_Task3_Training_Input/<image>.jpg
<root>/ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv
    header image,MEL,NV,BCC,AKIEC,BKL,DF,VASC; one-hot rows like ISIC_0024306,0.0,1.0,0.0,0.0,0.0,0.0,0.0
optional test set, the same way with Test (else Validation) in place of Training:
<root>/ISIC2018_Task3_Test_Input/, <root>/ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv
without one, 20% of each diagnosis of the training images is held out for testing"""

PathLike = str | os.PathLike[str]


def _input_dir(root: Path, split: str) -> Path:
    return root / f"ISIC2018_Task3_{split}_Input"


def _csv_path(root: Path, split: str) -> Path:
    return root / f"ISIC2018_Task3_{split}_GroundTruth" / f"ISIC2018_Task3_{split}_GroundTruth.csv"


def _root_problem(root: PathLike | None) -> str | None:
    return root_problem(root, LAYOUT)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, str, str]]]:
    """The diagnosis names (header order) and (line, image id, diagnosis) per row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            if len(header) < 3 or header[0].lower() != "image":
                raise DataError(
                    f"ISIC: '{path}' line 1: header {header} should be image followed by the diagnoses, "
                    f"e.g. image,{','.join(DIAGNOSES)}."
                )
            names = header[1:]
            rows = []
            for fields in reader:
                line = reader.line_num
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    raise DataError(f"ISIC: '{path}' line {line}: {len(fields)} fields, the header has {len(header)}.")
                try:
                    values = [float(v) for v in fields[1:]]
                except ValueError as exc:
                    raise DataError(f"ISIC: '{path}' line {line}: {exc}; the diagnosis columns must be 0.0 or 1.0.") from exc
                if sorted(values) != [0.0] * (len(values) - 1) + [1.0]:
                    raise DataError(
                        f"ISIC: '{path}' line {line}: {','.join(fields)} is not one-hot "
                        "(exactly one diagnosis 1.0, the others 0.0)."
                    )
                rows.append((line, fields[0].strip(), names[values.index(1.0)]))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"ISIC: cannot read '{path}': {exc}.") from exc
    return names, rows


def _images(root: Path, split: str) -> tuple[list[str], list[tuple[Path, str]]]:
    """Diagnosis names and (image file, diagnosis) for one split; missing files are errors."""
    folder, table = _input_dir(root, split), _csv_path(root, split)
    if not table.is_file():
        raise DataError(f"ISIC: ground-truth file '{table}' does not exist.")
    if not folder.is_dir():
        raise DataError(f"ISIC: image folder '{folder}' does not exist; the images listed in '{table}' go there.")
    names, rows = _read_csv(table)
    out = []
    for line, image_id, diagnosis in rows:
        image = folder / f"{image_id}.jpg"
        if not image.is_file():
            raise DataError(f"ISIC: image '{image}' (line {line} of '{table}') does not exist.")
        out.append((image, diagnosis))
    return names, out


def _test_split(root: Path) -> str | None:
    for split in ("Test", "Validation"):
        if _csv_path(root, split).is_file():
            return split
    return None


def categories(root: PathLike | None) -> list[str]:
    """The diagnoses in the training CSV's header, sorted ([] when the CSV is missing)."""
    if _root_problem(root) or not _csv_path(Path(root), "Training").is_file():
        return []
    try:
        with open(_csv_path(Path(root), "Training"), newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return sorted(h.strip() for h in header[1:] if h.strip())


def check(root: PathLike | None) -> list[str]:
    """Problems that stop ISIC 2018 from loading from ``root``; an empty list means it is usable."""
    problem = _root_problem(root)
    if problem:
        return [problem]
    root = Path(root)
    problems = []
    if not _input_dir(root, "Training").is_dir():
        problems.append(f"image folder '{_input_dir(root, 'Training')}' is missing")
    if not _csv_path(root, "Training").is_file():
        problems.append(f"ground-truth file '{_csv_path(root, 'Training')}' is missing")
    if problems:
        return [p + f"; the root must be laid out as:\n{LAYOUT}" for p in problems]
    for split in ("Training", _test_split(root)):
        if split is None:
            continue
        try:
            _, images = _images(root, split)
            if not images:
                problems.append(f"'{_csv_path(root, split)}' lists no images")
        except DataError as exc:
            problems.append(str(exc).removeprefix("ISIC: "))
    return problems


def _holdout(images: list[tuple[Path, str]], seed: int) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Split off a seeded HOLDOUT_FRACTION of each diagnosis (at least one image of any diagnosis
    with two or more); returns (kept, held out), both in the original order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2018]))
    held: set[int] = set()
    for diagnosis in sorted({d for _, d in images}):
        idx = [i for i, (_, d) in enumerate(images) if d == diagnosis]
        k = int(round(HOLDOUT_FRACTION * len(idx)))
        if k == 0 and len(idx) >= 2:
            k = 1
        held.update(int(i) for i in rng.permutation(idx)[:k])
    kept = [im for i, im in enumerate(images) if i not in held]
    return kept, [im for i, im in enumerate(images) if i in held]


def items(root: PathLike | None, category: str | None, seed: int = 0) -> Listing:
    """ISIC 2018 with diagnosis ``category`` as normal: training files and test items (no masks)."""
    root = existing_root(root, _root_problem(root), "ISIC")
    table = _csv_path(root, "Training")
    if not table.is_file():
        raise DatasetNotFoundError(
            f"ISIC: ground-truth file '{table}' does not exist; the root must be laid out as:\n{LAYOUT}"
        )
    if not _input_dir(root, "Training").is_dir():
        raise DatasetNotFoundError(
            f"ISIC: image folder '{_input_dir(root, 'Training')}' does not exist; the root must be laid out as:\n{LAYOUT}"
        )
    names, training = _images(root, "Training")
    matches = [n for n in names if category is not None and n.lower() == category.strip().lower()]
    if not matches:
        what = "name the normal diagnosis as category" if category is None else f"no diagnosis {category!r} in '{table}'"
        raise DataError(f"ISIC: {what}; diagnoses: {', '.join(sorted(names))} (NV, benign nevi, is the usual choice).")
    normal = matches[0]
    test_split = _test_split(root)
    if test_split is None:
        training, test = _holdout(training, seed)
    else:
        test_names, test = _images(root, test_split)
        if normal not in test_names:
            raise DataError(f"ISIC: '{_csv_path(root, test_split)}' has no column {normal}; its header: {test_names}.")
    train = [image for image, d in training if d == normal]
    items = [Item(image, int(d != normal)) for image, d in test]
    return Listing(normal, train, items)


class ISICFormat(AnomalyFormat, name=NAME):
    summary = "ISIC 2018 task 3: images + ground-truth CSV; one diagnosis is normal"
    example = "robustad train --data isic --root ~/data/isic2018 --category NV --out runs/isic-nv"
    resolution = 224
    layout = LAYOUT
    aliases = ("isic2018",)
    preset_by_size = True
    check = staticmethod(check)
    categories = staticmethod(categories)
    items = staticmethod(items)


load = FORMATS[NAME].load  # the registered instance
