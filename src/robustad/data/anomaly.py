"""Helpers the anomaly-detection formats share to check their folders and name their categories
(the split itself is assembled in :mod:`robustad.data.splits`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from robustad.errors import DataError, DatasetNotFoundError

__all__ = ["check_categories", "existing_root", "pick_category", "require_dir", "require_file", "root_problem"]

PathLike = str | os.PathLike[str]


def root_problem(root: PathLike | None, layout: str) -> str | None:
    """Why ``root`` cannot hold the data set (None if it is an existing folder)."""
    if root is None:
        return f"no root given: pass --root, the folder laid out as:\n{layout}"
    if not Path(root).is_dir():
        return f"root folder '{root}' does not exist; it must be laid out as:\n{layout}"
    return None


def existing_root(root: PathLike | None, problem: str | None, label: str) -> Path:
    """``root`` as a Path, or DatasetNotFoundError with ``problem`` (from the format's root check)."""
    if problem:
        raise DatasetNotFoundError(f"{label}: {problem}")
    return Path(root)


def pick_category(category: str | None, found: list[str], label: str, where: PathLike, noun: str = "category",
                  plural: str | None = None) -> str:
    """``category`` if it is one of ``found``, else an error naming the value and listing them."""
    if category not in found:
        what = "name a category" if category is None else f"no {noun} {category!r} in '{where}'"
        plural = plural or {"category": "categories", "class": "classes"}.get(noun, noun + "s")
        raise DataError(f"{label}: {what}; {plural} found: {', '.join(found) or 'none'}.")
    return category


def require_dir(path: PathLike, what: str, hint: str = "") -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{what}: folder '{folder}' does not exist. {hint}".strip())
    return folder


def require_file(path: PathLike, what: str, hint: str = "") -> Path:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{what}: file '{file}' does not exist. {hint}".strip())
    return file


def check_categories(root: PathLike | None, layout: str, categories: Callable[[PathLike], list[str]],
                     problems_of: Callable[[Path], list[str]], none_found: str) -> list[str]:
    """A per-category format's check: the root's problem, or ``none_found`` when it holds no
    category, or each category folder's problems prefixed by the category."""
    problem = root_problem(root, layout)
    if problem:
        return [problem]
    cats = categories(root)
    if not cats:
        return [f"{none_found} in '{root}'; it must be laid out as:\n{layout}"]
    return [f"{cat}: {p}" for cat in cats for p in problems_of(Path(root) / cat)]
