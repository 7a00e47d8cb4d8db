"""SVHN (Street View House Numbers), cropped-digits format: ``train_32x32.mat``, ``test_32x32.mat``.

Each file is a MATLAB v5 file with ``X`` uint8 ``[32, 32, 3, N]`` and ``y`` ``[N, 1]`` holding
labels 1..10, where 10 stands for the digit 0. ``load`` maps 10 to 0, so label k is digit k.
The optional ``extra_32x32.mat`` is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustad.data.formats.base import ClassData, ClassFormat
from robustad.data.formats._classdata import PathLike, check_image_size, class_data, not_found, resolve_root
from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["SVHNFormat", "CLASS_NAMES", "LAYOUT", "NAME", "check", "load"]

NAME = "svhn"
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
CLASS_NAMES = tuple(str(d) for d in range(10))

LAYOUT = f"""\
<root>/{FILES["train"]}   (training set, 73,257 images)
<root>/{FILES["test"]}    (test set, 26,032 images)
The cropped-digits files ("Format 2") as downloaded; extra_32x32.mat is not used.
Without --root, <root> is <robustad cache>/{NAME}.
"""


def _whos(path: Path) -> dict[str, tuple[int, ...]]:
    from scipy.io import whosmat

    try:
        return {name: tuple(shape) for name, shape, _ in whosmat(str(path))}
    except NotImplementedError as exc:  # MATLAB v7.3 files are HDF5
        raise DataError(f"'{path}' is a MATLAB v7.3 (HDF5) file; SVHN ships as MATLAB v5 ({exc}).") from exc
    except Exception as exc:  # noqa: BLE001 - scipy raises many kinds for damaged files
        raise DataError(f"'{path}' is not a readable MATLAB file ({type(exc).__name__}: {exc}).") from exc


def _shape_problem(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    x, y = shapes.get("X"), shapes.get("y")
    if x is None or y is None:
        return f"'{path}' has no {'X' if x is None else 'y'} variable (found {sorted(shapes)}); it is not an SVHN file."
    if len(x) != 4 or x[:3] != (32, 32, 3):
        return f"'{path}': X is {list(x)}, expected [32, 32, 3, N]."
    if len(y) != 2 or sorted(y) != sorted((x[3], 1)):
        return f"'{path}': y is {list(y)}, expected [{x[3]}, 1] (one label per image)."
    return None


def check(root: PathLike | None = None) -> list[str]:
    """Problems that stop :func:`load` (empty list: usable); reads only the MATLAB headers."""
    folder = resolve_root(root, NAME)
    if not folder.is_dir():
        return [f"folder '{folder}' does not exist; expected layout:\n{LAYOUT.rstrip()}"]
    problems = []
    for name in FILES.values():
        path = folder / name
        if not path.is_file():
            problems.append(f"missing file '{path}'")
            continue
        try:
            problem = _shape_problem(path, _whos(path))
        except DataError as exc:
            problem = str(exc)
        if problem:
            problems.append(problem)
    return problems


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
    except NotImplementedError as exc:
        raise DataError(f"'{path}' is a MATLAB v7.3 (HDF5) file; SVHN ships as MATLAB v5 ({exc}).") from exc
    except Exception as exc:  # noqa: BLE001 - scipy raises many kinds for damaged files
        raise DataError(
            f"'{path}' is not a readable MATLAB file ({type(exc).__name__}: {exc}); "
            "the file is damaged, download it again."
        ) from exc
    problem = _shape_problem(path, {k: np.shape(v) for k, v in mat.items() if k in ("X", "y")})
    if problem:
        raise DataError(problem + " Download the file again.")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8:
        raise DataError(f"'{path}': X has dtype {x.dtype}, expected uint8.")
    if y.dtype.kind not in "iuf" or (y.size and (np.any(y != np.round(y)) or y.min() < 1 or y.max() > 10)):
        raise DataError(f"'{path}': y must hold the labels 1..10 (10 = digit 0); download the file again.")
    labels = y.astype(np.int64) % 10  # 10 -> 0, 1..9 unchanged
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # [H, W, C, N] -> [N, C, H, W]
    return images, labels


def load(root: PathLike | None = None, image_size: int | None = None) -> ClassData:
    """SVHN as uint8 ``[N, 3, 32, 32]`` (float in [0, 1] if resized), labels = digits 0..9."""
    check_image_size(image_size)
    folder = resolve_root(root, NAME)
    if not folder.is_dir():
        raise DatasetNotFoundError("SVHN: " + not_found("folder", folder, LAYOUT))
    for name in FILES.values():
        if not (folder / name).is_file():
            raise DatasetNotFoundError("SVHN: " + not_found("file", folder / name, LAYOUT))
    train_x, train_y = _read(folder / FILES["train"])
    test_x, test_y = _read(folder / FILES["test"])
    return class_data(train_x, train_y, test_x, test_y, CLASS_NAMES, image_size)


class SVHNFormat(ClassFormat, name=NAME):
    summary = "SVHN cropped digits, train_32x32.mat / test_32x32.mat"
    example = "robustad train --data svhn --root ~/data/svhn --normal-class 1 --out runs/svhn1"
    resolution = 32
    layout = LAYOUT
    aliases = ()
    check = staticmethod(check)
    arrays = staticmethod(load)

    def class_names(self, root=None) -> tuple[str, ...]:
        return CLASS_NAMES
