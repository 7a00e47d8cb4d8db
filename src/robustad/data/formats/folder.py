"""Your own images in plain folders, as anomalib's Folder data set: a folder of normal images,
one or more folders of abnormal ones, optionally a folder of normal test images and a folder of
ground-truth masks for the abnormal images.

Images are listed directly inside each folder (not recursively). Without ``normal_test_dir`` a
seeded ``normal_split_ratio`` of the normal images is held out for testing and never trained on.
Relative folders are taken relative to ``root`` when one is given (else to the working directory).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robustad.data.formats.base import FORMATS, AnomalyFormat, Listing
from robustad.data.folder import IMAGE_EXTENSIONS, list_images
from robustad.data.splits import Item
from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["LAYOUT", "FolderFormat", "categories", "check", "items", "load"]

NAME = "folder"

LAYOUT = """\
<normal_dir>/*.png          normal images (training, and testing unless normal_test_dir is given)
<abnormal_dir>/*.png        abnormal test images; one or more such folders
<normal_test_dir>/*.png     optional: normal test images (else normal_split_ratio, default 0.2, of normal_dir)
<mask_dir>/<stem>.png       optional: mask of an abnormal image <stem>.* (or <mask_dir>/<stem>_mask.png)
folders are not searched recursively; relative folders are taken relative to --root when it is given
e.g. robustad train --data folder --root ~/parts --normal-dir good --abnormal-dir scratch --abnormal-dir dent"""

PathLike = str | os.PathLike[str]


def categories(root: PathLike | None) -> list[str]:
    """Always []: the category is the name of the normal folder given to :func:`load`."""
    return []


def check(root: PathLike | None) -> list[str]:
    """[] when ``root`` is a folder (or not given: it is optional); else the problem."""
    if root is None or Path(root).is_dir():
        return []
    return [f"root folder '{root}' does not exist; it is the folder the relative normal/abnormal/mask folders are in:\n{LAYOUT}"]


def _resolve(base: Path | None, folder: PathLike) -> Path:
    path = Path(folder).expanduser()
    return path if base is None or path.is_absolute() else base / path


def _folder_images(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"folder data set: {what} folder '{folder}' does not exist.")
    images = [p for p in list_images(folder) if not p.name.startswith(".")]
    if not images:
        raise DataError(
            f"folder data set: no images in {what} folder '{folder}'; looked (not recursively) for "
            f"{', '.join(IMAGE_EXTENSIONS)}."
        )
    return images


def _mask_for(mask_dir: Path, image: Path) -> Path:
    candidates = [mask_dir / f"{image.stem}.png", mask_dir / f"{image.stem}_mask.png"]
    for mask in candidates:
        if mask.is_file():
            return mask
    raise DataError(
        f"folder data set: abnormal image '{image}' has no mask in '{mask_dir}'; expected "
        f"'{candidates[0].name}' or '{candidates[1].name}'."
    )


def items(
    root: PathLike | None = None,
    category: str | None = None,
    seed: int = 0,
    *,
    normal_dir: PathLike | None = None,
    abnormal_dirs: PathLike | Sequence[PathLike] | None = None,
    normal_test_dir: PathLike | None = None,
    mask_dir: PathLike | None = None,
    normal_split_ratio: float = 0.2,
) -> Listing:
    """Folders of normal and abnormal images: training files and test items; the category is the
    normal folder's name unless ``category`` is given. Masks only when ``mask_dir`` is given."""
    base = None
    if root is not None:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise DatasetNotFoundError(
                f"folder data set: root folder '{root}' does not exist; relative folders are taken inside it:\n{LAYOUT}"
            )
    if normal_dir is None:
        raise DataError(f"folder data set: name the folder of normal images (normal_dir, CLI: --normal-dir):\n{LAYOUT}")
    if abnormal_dirs is None or (not isinstance(abnormal_dirs, str | os.PathLike) and len(abnormal_dirs) == 0):
        raise DataError(
            f"folder data set: name one or more folders of abnormal images (abnormal_dirs, CLI: --abnormal-dir):\n{LAYOUT}"
        )
    if isinstance(abnormal_dirs, str | os.PathLike):
        abnormal_dirs = [abnormal_dirs]
    normal = _resolve(base, normal_dir)
    abnormal = [_resolve(base, d) for d in abnormal_dirs]
    normal_images = _folder_images(normal, "normal")
    for folder in abnormal:
        if folder.is_dir() and folder.resolve() == normal.resolve():
            raise DataError(f"folder data set: '{folder}' is given as both the normal and an abnormal folder.")
    if normal_test_dir is not None:
        normal_test = _resolve(base, normal_test_dir)
        if normal_test.is_dir() and normal_test.resolve() == normal.resolve():
            raise DataError(
                f"folder data set: normal_test_dir '{normal_test}' is the training folder; give another folder, "
                "or leave it out to hold out normal_split_ratio of the normal images."
            )
        train, test_normal = normal_images, _folder_images(normal_test, "normal test")
    else:
        if isinstance(normal_split_ratio, bool) or not 0.0 < float(normal_split_ratio) < 1.0:
            raise DataError(f"folder data set: normal_split_ratio must be between 0 and 1 (exclusive), got {normal_split_ratio!r}.")
        if len(normal_images) < 2:
            raise DataError(
                f"folder data set: '{normal}' has {len(normal_images)} image; holding out normal test images needs "
                "at least 2, or give normal_test_dir."
            )
        k = min(max(1, int(round(normal_split_ratio * len(normal_images)))), len(normal_images) - 1)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        held = set(rng.permutation(len(normal_images))[:k].tolist())
        train = [p for i, p in enumerate(normal_images) if i not in held]
        test_normal = [p for i, p in enumerate(normal_images) if i in held]
    masks = None if mask_dir is None else _resolve(base, mask_dir)
    if masks is not None and not masks.is_dir():
        raise DataError(f"folder data set: mask folder '{masks}' does not exist.")
    items = [Item(p, 0) for p in test_normal]
    for folder in abnormal:
        for image in _folder_images(folder, "abnormal"):
            items.append(Item(image, 1, None if masks is None else _mask_for(masks, image)))
    return Listing(category or normal.name, train, items)


class FolderFormat(AnomalyFormat, name=NAME):
    summary = "your own folders: normal images, abnormal folders, optional masks (as in anomalib)"
    example = "robustad train --data folder --normal-dir good --abnormal-dir bad --out runs/mine"
    resolution = 224
    layout = LAYOUT
    preset_by_size = True
    needs_category = False
    checkable = False
    options = ("normal_dir", "abnormal_dirs", "normal_test_dir", "mask_dir", "normal_split_ratio")
    check = staticmethod(check)
    categories = staticmethod(categories)
    items = staticmethod(items)

    def training_folder(self, root, category, normal_dir=None):
        return None if normal_dir is None else Path(normal_dir)


load = FORMATS[NAME].load  # the registered instance
