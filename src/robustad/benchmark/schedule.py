"""Schedule a suite's cells: which are done, stale, claimed by another run or still to run, and running
the rest one after another, in parallel processes or as cluster jobs (robustad.benchmark.launchers)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from robustad.benchmark.launchers import LocalLauncher
from robustad.benchmark.runner import (
    CELL_PAUSED_EXIT_CODE,
    RUNS_DIR,
    cell_path,
    check_suite,
    claim_cell,
    lock_path,
    release_cell,
    retire_cell,
    run_cell,
    stale_cell,
)
from robustad.benchmark.suites import BenchmarkSuite, Cell, benchmark_suite
from robustad.errors import ConfigError, RobustADError, TrainingPaused
from robustad.files import lock_holder
from robustad.methods.training import training_deadline
from robustad.provenance import summarize_changes


def plan_benchmark(suite: BenchmarkSuite | str, out: str | Path) -> list[dict[str, str]]:
    """What run_benchmark would do with each cell, doing none of it: one {"cell", "state", "detail"}
    per cell, state one of "done", "retrain" (trained with another config), "re-evaluate" (measured
    on another test set or with other attacks), "running" (claimed by another runner), "to run"."""
    suite = benchmark_suite(suite) if isinstance(suite, str) else suite
    check_suite(suite)
    out = Path(out)
    plan = []
    for cell in suite.cells():
        state, detail = "to run", ""
        try:
            training, measured = stale_cell(suite, cell, out) if cell_path(out, cell).is_file() else (None, None)
        except FileNotFoundError:  # another runner sharing `out` retired it just now
            training = measured = None
        if training:
            state, detail = "retrain", summarize_changes(training + measured)
        elif measured:
            state, detail = "re-evaluate", summarize_changes(measured)
        elif training == measured == []:
            state = "done"
        elif (holder := lock_holder(lock_path(out, cell))) is not None:
            state, detail = "running", holder
        elif (out / RUNS_DIR / cell.id).is_dir():
            detail = "its training run is there and resumes"
        plan.append({"cell": cell.id, "state": state, "detail": detail})
    return plan


def run_benchmark(suite: BenchmarkSuite | str, out: str | Path, log: Callable[[str], None] = print,
                  in_process: bool = False, progress: bool = False, jobs: int = 1,
                  deadline: float | None = None, threads_per_cell: int | None = None,
                  launcher=None) -> dict[str, Any]:
    """Run every cell without a current result file; return {done, skipped, failed, busy, paused, unstarted}.

    A result measured otherwise than the suite would measure it now is stale: trained with another
    config (the preset or the suite's overrides changed since), its result and training run move to
    out/stale/ and the cell runs again; measured on another test set or with other attacks, only its
    result moves, and the kept detector is evaluated again.

    Each cell runs in its own process; `jobs` of them at a time, each with its share of the CPU
    cores as torch threads (OMP_NUM_THREADS, unless the caller set it): on a small CPU, two
    one-thread cells finish sooner than two two-thread cells one after the other. threads_per_cell
    overrides that share (the CLI passes the free cores divided by jobs).

    With a deadline (Unix time), no cell starts after it, and a cell's training stops at an epoch
    boundary rather than run past it (paused: its checkpoint resumes next time). A cell whose
    evaluation has begun runs to its end.

    launcher: where the cell processes run (robustad.benchmark.launchers): by default here, one
    process per cell and, with several GPUs, each on the least busy one; a SubmititLauncher submits
    them to Slurm instead (then `jobs` is how many cells are queued at once).
    """
    suite = benchmark_suite(suite) if isinstance(suite, str) else suite
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if in_process and jobs > 1:
        raise ConfigError("cells run in this process one at a time: use jobs=1 with in_process, or drop in_process")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps(suite.to_dict(), indent=2))
    done, skipped, failed, busy, paused, unstarted = [], [], [], [], [], []
    cells = suite.cells()
    pending = []
    for i, (cell, row) in enumerate(zip(cells, plan_benchmark(suite, out)), 1):
        if row["state"] == "done":
            skipped.append(cell.id)
            continue
        if row["state"] == "retrain":
            log(f"cell {cell.id} was trained with another config than its preset gives now ({row['detail']}); "
                f"its result and run moved to {retire_cell(out, cell)}, and it runs again")
        elif row["state"] == "re-evaluate":
            log(f"cell {cell.id} was measured with another test set or attacks than the suite gives now "
                f"({row['detail']}); its result moved to {retire_cell(out, cell, keep_run=True)}, "
                "and it is evaluated again (its trained detector is kept)")
        pending.append((i, cell))

    def claimed(i: int, cell: Cell) -> bool:
        """Whether this runner may start the cell now (before the deadline, no result yet, no other runner on it)."""
        if deadline is not None and time.time() >= deadline:
            unstarted.append(cell.id)
            return False
        if cell_path(out, cell).is_file():  # another runner sharing `out` finished it meanwhile
            skipped.append(cell.id)
            return False
        holder = claim_cell(out, cell)
        if holder is not None:
            log(f"cell {i}/{len(cells)}: {cell.id} is being run by {holder}; skipped (if that run is gone, "
                f"delete {lock_path(out, cell)})")
            busy.append(cell.id)
            return False
        log(f"cell {i}/{len(cells)}: {cell.id}")
        return True

    if in_process:
        for i, cell in pending:
            if not claimed(i, cell):
                continue
            try:
                with training_deadline(deadline):
                    run_cell(suite, cell, out, log=log, progress=progress)
                done.append(cell.id)
            except TrainingPaused as err:
                log(f"[{cell.id}] paused: {err}")
                paused.append(cell.id)
            except RobustADError as err:
                log(f"[{cell.id}] failed: {err}")
                failed.append(cell.id)
            finally:
                release_cell(out, cell)
    else:
        env = {**os.environ}
        if threads_per_cell is not None:
            env["OMP_NUM_THREADS"] = str(threads_per_cell)
        elif jobs > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))

        launcher = launcher or LocalLauncher(env)
        running: dict[Any, Cell] = {}
        started = time.perf_counter()
        while pending or running:
            while pending and len(running) < jobs:
                i, cell = pending.pop(0)
                if not claimed(i, cell):
                    continue
                spec = json.dumps({"suite": suite.to_dict(), "cell": asdict(cell), "out": str(out),
                                   "deadline": deadline})
                running[launcher.start(cell.id, spec)] = cell
            codes = {p: p.poll() for p in running}
            finished = [p for p, code in codes.items() if code is not None]
            if not finished:
                time.sleep(0.2)
                continue
            for proc in finished:
                cell = running.pop(proc)
                release_cell(out, cell)
                if codes[proc] == CELL_PAUSED_EXIT_CODE:
                    paused.append(cell.id)
                    continue
                (done if codes[proc] == 0 else failed).append(cell.id)
                if codes[proc] != 0:
                    where = "above" if not hasattr(proc, "job") else f"in {launcher.folder}"
                    log(f"[{cell.id}] failed (exit code {codes[proc]}); its error is {where}. "
                        "Re-running the command retries it.")
                finished_count = len(done) + len(failed)
                to_go = len(pending) + len(running)  # less any that another runner takes
                elapsed = time.perf_counter() - started
                failures = f" ({len(failed)} failed)" if failed else ""
                log(f"{finished_count}/{finished_count + to_go} cells finished{failures} in {_hours(elapsed)}; about "
                    f"{_hours(elapsed / finished_count * to_go)} to go at this pace")
    if skipped:
        log(f"{len(skipped)} cell(s) already had results and were skipped")
    if busy:
        log(f"{len(busy)} cell(s) were being run by another runner and were skipped")
    if paused or unstarted:
        log(f"time limit: {len(paused)} cell(s) paused in training and {len(unstarted)} not started; "
            "run the same command again to go on")
    return {"done": done, "skipped": skipped, "failed": failed, "busy": busy, "paused": paused,
            "unstarted": unstarted}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
