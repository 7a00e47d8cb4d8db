"""Writing results so that a reader never sees half a file and a planted link never redirects a write.

Every file robustad writes goes first to a fresh temporary file in the target's folder, created
exclusively (``tempfile.mkstemp``: O_CREAT | O_EXCL, so a symlink or file planted under a
predictable name is never opened), and is then renamed over the target, which replaces a link at
the target rather than writing through it. A full disk or a missing permission becomes an
:class:`~robustad.errors.OutputError` naming the file and what to do; the earlier file is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from robustad.errors import OutputError

__all__ = ["atomic_open", "atomic_write"]

TEMP_SUFFIX = ".tmp"


def _output_error(target: Path, err: OSError) -> OutputError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left to write {target}; free some disk space and run again "
                           "(files written before are unchanged)")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {target}: permission denied; choose a folder you can write to")
    return OutputError(f"cannot write {target}: {err.strerror or err}; check the folder and run again")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", newline: str | None = None,
                encoding: str | None = "utf-8") -> Iterator[IO]:
    """``with atomic_open(path) as f: ...`` writes f to a private temporary file, then renames it to path.

    If the block raises, the temporary file is removed and path keeps its old content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as err:
        raise _output_error(target, err) from err
    try:
        text = {} if mode == "wb" else {"newline": newline, "encoding": encoding}
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _output_error(target, err) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write bytes or text (UTF-8) to path in one atomic step (see :func:`atomic_open`)."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
    return Path(path)
