"""Turn user-supplied image batches into the one layout robustad works with.

That layout is a float32 tensor ``[N, C, H, W]`` with ``C`` in (1, 3) and every
value in ``[0, 1]``. Anything that cannot be converted without guessing is
rejected with an :class:`~robustad.errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from robustad.errors import InputError

__all__ = ["ALLOWED_CHANNELS", "to_image_tensor"]

ALLOWED_CHANNELS = (1, 3)
_EXPECTED = "[N,H,W] (grayscale) or [N,C,H,W] with C in (1, 3)"

ImageBatch = np.ndarray | torch.Tensor | Sequence[Any] | Dataset


def _item_image(item: Any) -> Any:
    # Datasets commonly yield (image, label) pairs; the image comes first.
    return item[0] if isinstance(item, tuple | list) else item


def as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise InputError(
                f"{name}: numpy dtype {x.dtype} is not numeric; pass uint8 or float images."
            )
        if not (x.dtype.isnative and x.flags.writeable):
            # torch cannot wrap non-native byte order or read-only buffers.
            x = np.array(x, dtype=x.dtype.newbyteorder("="), copy=True)
        return torch.from_numpy(x)
    raise InputError(
        f"{name}: cannot use an object of type {type(x).__name__} as an image; "
        "pass numpy arrays or torch tensors."
    )


def _stack_items(items: Sequence[Any] | Dataset, name: str) -> torch.Tensor:
    n = len(items)  # type: ignore[arg-type]
    if n == 0:
        raise InputError(f"{name} is empty; pass at least one image.")
    tensors = [as_tensor(_item_image(items[i]), f"{name}[{i}]") for i in range(n)]
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise InputError(
            f"{name}: items have different shapes {sorted(shapes)[:4]}; "
            "resize them to one size first (e.g. load_images(..., size=S))."
        )
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise InputError(
            f"{name}: items mix dtypes {sorted(map(str, dtypes))}; make them all uint8 or all float."
        )
    return torch.stack(tensors)


def _to_unit_float(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if t.dtype == torch.bool:
        return t.float()
    if not t.is_floating_point():
        raise InputError(
            f"{name}: integer dtype {t.dtype} is ambiguous (what is white?); "
            "pass uint8 (0..255) or float images scaled to [0, 1]."
        )
    t = t.float()
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise InputError(
            f"{name}: {bad} of {t.numel()} values are NaN or infinite; "
            "clean or drop those images before passing them."
        )
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(
            f"{name}: values must lie in [0, 1], found min {lo:.4g} and max {hi:.4g}; "
            "scale them to [0, 1] first (e.g. divide uint8 pixels by 255)."
        )
    return t


def _to_nchw(t: torch.Tensor, name: str) -> torch.Tensor:
    shape = tuple(t.shape)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim != 4:
        raise InputError(f"{name}: shape {shape} has {t.ndim} dims; expected {_EXPECTED}.")
    if t.shape[1] not in ALLOWED_CHANNELS:
        hint = ""
        if t.shape[-1] in ALLOWED_CHANNELS:
            hint = " It looks channels-last; use x.permute(0, 3, 1, 2)."
        raise InputError(
            f"{name}: shape {shape} has {t.shape[1]} channels; expected {_EXPECTED}.{hint}"
        )
    if t.shape[0] == 0 or t.shape[2] == 0 or t.shape[3] == 0:
        raise InputError(f"{name} is empty (shape {shape}); pass at least one non-empty image.")
    return t


def to_image_tensor(x: ImageBatch, name: str = "images") -> torch.Tensor:
    """Convert images to a float32 tensor ``[N, C, H, W]`` in ``[0, 1]`` on the CPU.

    Accepts a numpy array or torch tensor shaped ``[N,H,W]`` or ``[N,C,H,W]``
    (``C`` in 1, 3), or a torch ``Dataset`` / list whose items are images or
    ``(image, label)`` pairs. ``uint8`` is divided by 255; floats must already
    be finite and in ``[0, 1]``. ``name`` is used in error messages. A float32
    input may be returned without a copy, sharing memory with ``x``.
    """
    if isinstance(x, torch.Tensor | np.ndarray):
        t = as_tensor(x, name)
    elif isinstance(x, Dataset | Sequence) and not isinstance(x, str | bytes):
        t = _stack_items(x, name)
    else:
        raise InputError(
            f"{name}: cannot convert {type(x).__name__} to images; pass a numpy array, "
            "a torch tensor, a torch Dataset or a list of images."
        )
    t = _to_nchw(t, name)
    return _to_unit_float(t, name).contiguous()
