"""Where a benchmark cell's process runs: here (one process per cell, a GPU each where there are
several), or as a job of a cluster through submitit (Slurm; or submitit's local executor to try the
set-up). The runner polls handles; each cell still writes its own result file under --out.

submitit carries each job's command as a pickle in its own folder (out/submitit/, written by this
process); robustad never reads a job's result pickle back: a job reports through the exit-status
file the cell writes (robustad.benchmark.cell --status) and through the cell's result file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from robustad.errors import ConfigError

__all__ = ["CellHandle", "LocalLauncher", "SubmititLauncher", "visible_gpus"]

CLUSTERS = ("slurm", "local")


class CellHandle(Protocol):
    def poll(self) -> int | None:
        """None while the cell runs; then its exit code (0 done, robustad.benchmark.runner's paused code, else failed)."""


def visible_gpus(environ=None) -> list[str]:
    """The CUDA devices a cell may be given, as CUDA_VISIBLE_DEVICES entries."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # no usable CUDA runtime: no GPUs to share out
        return []


def cell_command(spec: str, status: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "robustad.benchmark.cell", spec, *(["--status", str(status)] if status else [])]


class LocalLauncher:
    """A process per cell on this machine; with several GPUs, each cell gets the least busy one."""

    def __init__(self, env: dict[str, str], gpus: list[str] | None = None):
        self.env = env
        self.gpus = visible_gpus(env) if gpus is None else gpus
        self.busy: dict[subprocess.Popen, str] = {}

    def gpu_for_next(self) -> str | None:
        if len(self.gpus) < 2:
            return None  # zero or one GPU: nothing to choose
        running = [g for p, g in self.busy.items() if p.poll() is None]
        return min(self.gpus, key=lambda g: (running.count(g), self.gpus.index(g)))

    def start(self, cell_id: str, spec: str) -> subprocess.Popen:
        env, gpu = dict(self.env), self.gpu_for_next()
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        proc = subprocess.Popen(cell_command(spec), env=env)
        if gpu is not None:
            self.busy[proc] = gpu
        return proc


@dataclass(eq=False)  # compared and hashed by identity: the runner keys its running cells by handle
class _JobHandle:
    job: object  # a submitit Job
    status: Path

    def poll(self) -> int | None:
        if self.status.is_file():
            try:
                return int(json.loads(self.status.read_text())["exit"])
            except (OSError, ValueError, KeyError, TypeError):
                return 1
        if self.job.done():  # ended without writing its status: killed (time limit, node failure) or crashed
            return 1
        return None


class SubmititLauncher:
    """Each cell as a submitit job: on Slurm (one GPU per cell if asked) or submitit's local executor."""

    def __init__(self, out: Path, cluster: str, partition: str | None = None, gpus_per_cell: int = 0,
                 cpus_per_cell: int = 1, minutes: int = 24 * 60):
        if cluster not in CLUSTERS:
            raise ConfigError(f"--submitit takes {' or '.join(CLUSTERS)}, got {cluster!r}")
        try:
            import submitit
        except ImportError:
            raise ConfigError("--submitit needs the submitit package: pip install 'robustad[cluster]', or make env") \
                from None
        self.submitit = submitit
        self.folder = Path(out) / "submitit"
        self.threads = cpus_per_cell
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        params = {"timeout_min": minutes, "cpus_per_task": cpus_per_cell, "name": "robustad-cell"}
        if gpus_per_cell:
            params["gpus_per_node"] = gpus_per_cell
        if partition:
            params["slurm_partition"] = partition
        self.executor.update_parameters(**params)

    def start(self, cell_id: str, spec: str) -> _JobHandle:
        status = self.folder / "status" / f"{cell_id}.json"
        status.parent.mkdir(parents=True, exist_ok=True)
        status.unlink(missing_ok=True)
        # the job's own environment (Slurm's GPU allocation included), with torch's threads set to the job's CPUs
        command = self.submitit.helpers.CommandFunction(
            ["env", f"OMP_NUM_THREADS={self.threads}", *cell_command(spec, status)], verbose=True)
        return _JobHandle(self.executor.submit(command), status)
