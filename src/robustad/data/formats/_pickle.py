"""Reading the CIFAR "python version" batches without trusting pickle.

A pickle can name any importable callable and have it called while loading, so a
plain ``pickle.load`` of a downloaded file runs whatever the file says. The CIFAR
batches are dicts of bytes keys, lists of ints, byte strings and numpy arrays; the
only globals such a file needs are the ones numpy uses to rebuild an array:

- ``numpy.core.multiarray._reconstruct`` (numpy >= 2 writes ``numpy._core.multiarray``),
  ``numpy.ndarray`` and ``numpy.dtype``: protocols 0 to 4, including the original
  Python 2 files, which were written with protocol 2;
- ``numpy.core.numeric._frombuffer`` (``numpy._core.numeric``): protocol 5;
- ``_codecs.encode``: Python 3 writes a ``bytes`` object with protocol 2 as
  ``_codecs.encode(text, "latin1")``; only that encoding is allowed here.

:class:`RestrictedUnpickler` resolves exactly those names and refuses all others.
"""

from __future__ import annotations

import codecs
import importlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robustad.errors import DataError

__all__ = ["RestrictedUnpickler", "load_pickle", "read_cifar_batch"]

CIFAR_SIDE = 32
CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE  # 3072: 1024 red, 1024 green, 1024 blue, each row-major

_GZIP_MAGIC = b"\x1f\x8b"
_LATIN1_NAMES = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}


def _numpy_private(submodule: str, attr: str) -> Any:
    # numpy 2 renamed numpy.core to numpy._core; old pickles still say numpy.core.
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{attr}")  # pragma: no cover - numpy internals moved


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to the one use pickle makes of it: bytes as latin-1 text."""
    if not isinstance(text, str) or encoding.lower() not in _LATIN1_NAMES or errors != "strict":
        raise pickle.UnpicklingError(
            f"_codecs.encode is only allowed as encode(text, 'latin1'), got encoding {encoding!r}"
        )
    return codecs.encode(text, "latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_private("multiarray", "_reconstruct")
    frombuffer = _numpy_private("numeric", "_frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


_ALLOWED = _allowed_globals()


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenGlobalError(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_pickle(path: str | os.PathLike[str], what: str = "CIFAR batch") -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (``encoding="bytes"``).

    Raises :class:`DataError` naming the file if it is unreadable, damaged, or refers to
    anything other than numpy's array-rebuilding functions.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == _GZIP_MAGIC:
                raise DataError(
                    f"'{path}' is gzip-compressed, so it is not a {what}: extract the downloaded "
                    "archive (tar -xzf) and point at the extracted files."
                )
            return RestrictedUnpickler(f, encoding="bytes").load()
    except DataError:
        raise
    except ForbiddenGlobalError as exc:
        raise DataError(
            f"'{path}' is not a {what}: it refers to {exc.qualname}, which a {what} never "
            "needs, so it was not loaded (unpickling it could run arbitrary code). "
            "Replace it with the original file."
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc}.") from exc
    except Exception as exc:  # noqa: BLE001 - anything the unpickler trips on means a damaged file
        raise DataError(
            f"'{path}' is not a readable {what} ({type(exc).__name__}: {exc}); "
            "the file is damaged or of another kind, download it again."
        ) from exc


def _bytes_keys(obj: dict[Any, Any]) -> dict[Any, Any]:
    return {(k.encode("latin1") if isinstance(k, str) else k): v for k, v in obj.items()}


def read_cifar_batch(
    path: str | os.PathLike[str], label_key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR batch to ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    The batch is a dict with ``b"data"`` (uint8 ``[N, 3072]``, each row the red, green and
    blue 32x32 planes in turn, each row-major) and ``label_key`` (a list of ints).
    """
    path = Path(path)
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(
            f"'{path}' is not a CIFAR batch: it holds a {type(batch).__name__}, not a dict."
        )
    batch = _bytes_keys(batch)
    missing = [k.decode() for k in (b"data", label_key) if k not in batch]
    if missing:
        raise DataError(
            f"'{path}' is not a CIFAR batch of this data set: it has no {', '.join(missing)} "
            f"entry (keys: {sorted(k.decode('latin1') for k in batch if isinstance(k, bytes))})."
        )
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(
            f"'{path}': data is {shape}, expected a uint8 array [N, {CIFAR_PIXELS}]; "
            "the file is damaged, download it again."
        )
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise DataError(f"'{path}': data has dtype {data.dtype}, expected uint8 pixel values.")
        data = data.astype(np.uint8)
    try:
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError) as exc:
        raise DataError(f"'{path}': {label_key.decode()} is not a list of integers ({exc}).") from exc
    if labels.size == 0:
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DataError(
            f"'{path}': {label_key.decode()} must be {len(data)} integers (one per image), "
            f"found shape {labels.shape} dtype {labels.dtype}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"'{path}': {label_key.decode()} range from {labels.min()} to {labels.max()}, "
            f"expected 0..{num_classes - 1}."
        )
    images = np.ascontiguousarray(data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE))
    return images, labels.astype(np.int64)
