"""Small helpers shared by the classification formats: argument checks, resizing, messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustad.data.cache import cache_dir
from robustad.data.formats.base import ClassData
from robustad.errors import DataError, DatasetNotFoundError

PathLike = str | os.PathLike[str]

_RESIZE_CHUNK = 512  # images resized per interpolate call, to bound the temporary memory


def check_image_size(image_size: int | None) -> None:
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 1
    ):
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}.")


def default_root(name: str) -> Path:
    """Where a data set is looked for when no root is given: ``<robustad cache>/<name>``."""
    return cache_dir() / name


def resolve_root(root: PathLike | None, name: str) -> Path:
    return Path(root).expanduser() if root is not None else default_root(name)


def resize_images(x: np.ndarray, image_size: int | None) -> np.ndarray:
    """Return ``x`` unchanged at its native size, else float32 in [0, 1] resized to SxS.

    ``x`` is ``[N, C, H, W]`` or ``[N, H, W]`` (uint8, or float already in [0, 1]); the
    layout is kept. Resizing is bilinear with antialiasing, done a chunk at a time.
    """
    check_image_size(image_size)
    if image_size is None or tuple(x.shape[-2:]) == (image_size, image_size):
        return x
    gray = x.ndim == 3
    out_shape = (*x.shape[:-2], image_size, image_size)
    out = np.empty(out_shape, dtype=np.float32)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    for start in range(0, len(x), _RESIZE_CHUNK):
        part = torch.from_numpy(np.ascontiguousarray(x[start : start + _RESIZE_CHUNK])).float()
        if scale != 1.0:
            part = part / scale
        if gray:
            part = part.unsqueeze(1)
        part = F.interpolate(
            part, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
        out[start : start + len(part)] = (part.squeeze(1) if gray else part).numpy()
    return out


def class_data(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    class_names: tuple[str, ...],
    image_size: int | None,
) -> ClassData:
    return ClassData(
        train_x=resize_images(train_x, image_size),
        train_y=np.asarray(train_y, dtype=np.int64),
        test_x=resize_images(test_x, image_size),
        test_y=np.asarray(test_y, dtype=np.int64),
        class_names=tuple(class_names),
    )


def not_found(what: str, path: Path, layout: str) -> str:
    """Message for a missing file or folder, with the expected layout."""
    return (
        f"{what} '{path}' does not exist. Expected layout:\n{layout.rstrip()}\n"
        "Put the files there or pass --root / root= pointing at the folder that holds them."
    )


def nested_folder(root: PathLike | None, name: str, nested: str, files: tuple[str, ...]) -> Path:
    """``<root>/<nested>``, or ``root`` itself when the files lie there directly (root defaults to the cache)."""
    base = resolve_root(root, name)
    if not (base / nested).is_dir() and any((base / f).is_file() for f in files):
        return base
    return base / nested


def file_problems(folder: Path, files: tuple[str, ...], layout: str) -> list[str]:
    """What is missing of ``files`` in ``folder`` (empty: all there); only checks that they exist."""
    if not folder.is_dir():
        return [f"folder '{folder}' does not exist; expected layout:\n{layout.rstrip()}"]
    return [f"missing file '{folder / name}'" for name in files if not (folder / name).is_file()]


def require_files(folder: Path, files: tuple[str, ...], layout: str, label: str) -> None:
    """DatasetNotFoundError naming the first missing folder or file, with the layout."""
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{label}: " + not_found("folder", folder, layout))
    for name in files:
        if not (folder / name).is_file():
            raise DatasetNotFoundError(f"{label}: " + not_found("file", folder / name, layout))
