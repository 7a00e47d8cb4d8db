"""What robustad runs on: the torch thread count it picks, and the one-line and full reports of it.

Torch starts with one thread per core. On a small machine where something else already runs,
that oversubscribes the cores: two 2-thread torch processes on 2 cores ran 5-50x slower than with
one thread each (BENCHMARKS.md). So the CLI takes the cores that are free, by the load average,
unless the user says otherwise (``--threads`` or ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from robustad.config import DEVICE_PATTERN
from robustad.errors import ConfigError

__all__ = ["ThreadChoice", "available_cores", "choose_threads", "describe_runtime", "device_words"]

MAX_THREADS = 1024


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # why this many, for the start-up line


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one, else the core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _busy_cores() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def choose_threads(requested: int | None = None, environ: dict[str, str] | None = None,
                   cores: int | None = None, busy: float | None = None) -> ThreadChoice:
    """The torch thread count: --threads if given, else OMP_NUM_THREADS if set, else the free cores.

    Free cores = available cores minus the one-minute load average, rounded, at least one. The
    load average counts runnable processes, this one included only once it has been running a while,
    so a fresh process on an idle machine gets every core.
    """
    environ = os.environ if environ is None else environ
    cores = available_cores() if cores is None else cores
    if requested is not None:
        if not 1 <= requested <= MAX_THREADS:
            raise ConfigError(f"--threads must be between 1 and {MAX_THREADS}, got {requested}")
        return ThreadChoice(requested, "--threads")
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        if omp.isdigit() and 1 <= int(omp) <= MAX_THREADS:
            return ThreadChoice(int(omp), "OMP_NUM_THREADS")
        raise ConfigError(f"OMP_NUM_THREADS must be a whole number from 1 to {MAX_THREADS}, got {omp!r}; "
                          "unset it or fix it")
    busy = _busy_cores() if busy is None else busy
    if busy is None:
        return ThreadChoice(cores, f"{cores} cores")
    free = max(1, min(cores, round(cores - busy)))
    if free == cores:
        return ThreadChoice(free, f"{cores} cores, idle")
    return ThreadChoice(free, f"{cores} cores, {busy:.1f} busy by the load average")


def device_words() -> str:
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"cuda ({torch.cuda.device_count()} x {', '.join(names)})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def describe_runtime(choice: ThreadChoice) -> str:
    """One line for the start of a run: versions, device and threads, and how to change them."""
    from robustad import __version__

    return (f"robustad {__version__}, torch {torch.__version__}, device {device_words()}, "
            f"{choice.threads} torch thread{'s' if choice.threads != 1 else ''} ({choice.reason}; --threads N to change)")


def resolve_device(name: str) -> torch.device:
    if not isinstance(name, (str, torch.device)) or not re.fullmatch(DEVICE_PATTERN, str(name)):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use device=cpu or auto")
    return device
