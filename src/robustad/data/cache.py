"""Where robustad keeps downloaded data, and safe ways to write it there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from robustad.files import atomic_write

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Return the cache root, creating it if needed.

    Order: ``$ROBUSTAD_CACHE``, then ``$XDG_CACHE_HOME/robustad``, then
    ``~/.cache/robustad``.
    """
    explicit = os.environ.get("ROBUSTAD_CACHE")
    if explicit:
        root = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        root = base / "robustad"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of an in-memory buffer."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks so large files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers never see a half-written file.

    The bytes go to a temporary file in the same directory (same file system,
    so ``os.replace`` is atomic) and are then renamed over the target.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"atomic_write_bytes writes bytes, not {type(data).__name__}")
    return atomic_write(path, bytes(data))
