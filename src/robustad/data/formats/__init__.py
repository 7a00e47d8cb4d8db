"""One module per data format, each defining a :class:`~robustad.data.formats.base.DataFormat`
subclass that registers itself in ``FORMATS`` (see :mod:`robustad.data.formats.base`).
:func:`load_all` imports every module of this package, so a new format is one new module."""

from __future__ import annotations

import importlib
import pkgutil

from robustad.data.formats.base import FORMATS, ClassData, DataFormat

__all__ = ["FORMATS", "ClassData", "DataFormat", "load_all"]


def load_all() -> dict[str, DataFormat]:
    """Import every format module (each registers itself) and return the registry."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    return FORMATS
