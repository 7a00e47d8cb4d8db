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
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from robustad.errors import OutputError

__all__ = ["LOCK_FILE", "atomic_open", "atomic_write", "folder_lock", "lock_holder", "remove_leftovers", "try_lock"]

LOCK_FILE = ".robustad.lock"  # in an output folder while a command writes there

TEMP_SUFFIX = ".tmp"
# .NAME.XXXXXXXX.tmp from tempfile.mkstemp (8 characters of [a-z0-9_]), NAME a kind of file robustad writes
_TEMP_NAME = re.compile(r"\.(?P<name>.+\.(?:json|safetensors|csv|md|png|onnx|txt))\.[a-z0-9_]{8}\.tmp")


# the errors a user fixes outside robustad (free space, permissions); any other OSError keeps its own traceback
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT)
_PERMISSION_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS)


def _output_error(target: Path, err: OSError) -> OutputError:
    if err.errno in _DISK_ERRORS:
        return OutputError(f"no space left to write {target}; free some disk space and run again "
                           "(files written before are unchanged)")
    if err.errno in _PERMISSION_ERRORS:
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
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        # only a full disk or a refused write becomes a one-line error; an OSError from the caller's own
        # code inside the block (reading some other file, say) is not about this target
        if isinstance(err, OSError) and err.errno in (*_DISK_ERRORS, *_PERMISSION_ERRORS):
            raise _output_error(target, err) from err
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write bytes or text (UTF-8) to path in one atomic step (see :func:`atomic_open`)."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
    return Path(path)


# --- locks: one writer per output folder (and per benchmark cell) -----------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def lock_holder(lock: Path) -> str | None:
    """Who holds the lock, or None when there is none or it is stale (its process is gone)."""
    try:
        info = json.loads(lock.read_text())
        pid, host = int(info["pid"]), str(info["host"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # a holder writes its lock right after creating it: unreadable for long means it died there
        try:
            return "a process that is starting" if time.time() - lock.stat().st_mtime < 30 else None
        except FileNotFoundError:
            return None
    started = f", started {info['started']}" if isinstance(info.get("started"), str) else ""
    if host == socket.gethostname():
        return f"process {pid}{started}" if _pid_alive(pid) else None
    return f"process {pid} on {host}{started}"  # cannot check another machine's processes


def try_lock(lock: Path) -> str | None:
    """Create `lock` for this process: None when taken, else who holds it. A stale lock is taken over."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            holder = lock_holder(lock)
            if holder is not None:
                return holder
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}, f)
        return None
    return "another process"


def remove_leftovers(folder: Path, target: str | None = None) -> list[Path]:
    """Delete atomic_open's temporary files in `folder` (only those for `target`, a file name, if given)
    that no live robustad command is writing: a file's own lock (score's CSV) is checked, and the
    caller holds the folder's. Links and folders are never touched."""
    removed = []
    pattern = f".{target}.*{TEMP_SUFFIX}" if target else f".*{TEMP_SUFFIX}"
    for path in Path(folder).glob(pattern):
        match = _TEMP_NAME.fullmatch(path.name)  # exactly what atomic_open names its files, for files robustad writes
        if match is None or (target is not None and match["name"] != target):
            continue
        if not path.is_file() or path.is_symlink() or lock_holder(path.parent / f".{match['name']}{LOCK_FILE}"):
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass  # not ours to remove after all (permissions); it harms nothing
    return removed


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str, name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold ``folder/name`` while a command writes into folder; another writer is refused in one line."""
    lock = Path(folder) / name
    created = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]  # deepest first
    try:
        holder = try_lock(lock)
    except OSError as err:
        raise _output_error(lock, err) from err
    if holder is not None:
        raise OutputError(f"{folder} is in use by another robustad command ({holder}); wait for it to finish "
                          f"or choose another --out for this {what}")
    try:
        # a writer killed mid-write (kill -9, power loss) left its temporary file; this lock's owner may clear it
        remove_leftovers(lock.parent, None if name == LOCK_FILE else name[1:-len(LOCK_FILE)])
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        for made in created:  # a command refused before writing anything leaves no empty folders behind
            try:
                made.rmdir()
            except OSError:
                break
