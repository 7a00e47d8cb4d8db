"""Run benchmark cells: train (or resume), evaluate under the suite's attacks, write one JSON per cell."""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from robustad.benchmark.launchers import LocalLauncher
from robustad.benchmark.suites import BenchmarkSuite, Cell, benchmark_suite
from robustad.benchmark.tables import read_cell
from robustad.data.registry import load_dataset
from robustad.errors import ConfigError, RobustADError, TrainingPaused
from robustad.evaluation.report import write_json
from robustad.evaluation.suite import WORST, run_suite
from robustad.files import lock_holder, try_lock
from robustad.methods.catalog import build_detector
from robustad.methods.training import training_deadline
from robustad.pipeline import train_or_resume
from robustad.provenance import config_changes, json_form, library_versions, summarize_changes

# a cell process's exit code when its training stopped at the time limit (it resumes next run)
CELL_PAUSED_EXIT_CODE = 3

CELLS_DIR = "cells"
RUNS_DIR = "runs"
STALE_DIR = "stale"  # results of cells whose config has changed since, kept for reference


def cell_path(out: Path, cell: Cell) -> Path:
    return out / CELLS_DIR / f"{cell.id}.json"


def _lock_path(out: Path, cell: Cell) -> Path:
    return out / CELLS_DIR / f"{cell.id}.running"


def claim_cell(out: Path, cell: Cell) -> str | None:
    """Mark `cell` as run by this process, so that runners sharing `out` never run it twice.

    Returns None when claimed, else a description of the runner that holds it. A lock left by a
    process that is gone (killed runner) is taken over.
    """
    return try_lock(_lock_path(out, cell))


def release_cell(out: Path, cell: Cell) -> None:
    _lock_path(out, cell).unlink(missing_ok=True)


def _preset_config(suite: BenchmarkSuite, cell: Cell):
    overrides = {**suite.train_overrides, "train.seed": cell.seed}
    return build_detector(cell.method, suite.preset(cell.dataset, cell.normal), overrides).config


def check_suite(suite: BenchmarkSuite) -> None:
    """Fail now, not once per cell: every (data set, method) config builds with the suite's overrides,
    and the set sizes are usable."""
    for name, limit, least in (("max_test", suite.max_test, 2), ("max_train", suite.max_train, 2)):
        if limit is not None and limit < least:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {least}, got {limit}")
    seen = set()
    for cell in suite.cells():
        if (cell.dataset, cell.method) not in seen:
            seen.add((cell.dataset, cell.method))
            try:
                _preset_config(suite, cell)
            except ConfigError as err:
                raise ConfigError(f"{cell.method} on {cell.dataset}: {err}") from None


def measurement(suite: BenchmarkSuite, eps: float) -> dict[str, Any]:
    """What a cell's AUROCs depend on besides its trained detector: the data limits and the attacks
    (as JSON reads them back). Recorded in every cell, so that a changed suite makes old cells stale."""
    attacks = suite.attack_suite(eps)
    return json_form({"max_train": suite.max_train, "max_test": suite.max_test, "eps": eps,
                      "targets": list(attacks.targets),
                      "attacks": {spec.label(): asdict(spec) for spec in attacks.attacks}})


def _changes_shown_by_rows(suite: BenchmarkSuite, record: dict[str, Any]) -> tuple[list[str], list[str]]:
    """For cells written before they recorded their measurement: what their rows show of it, as
    (training-set size beyond the suite's limit, changes to the test-set size, attack labels at the
    cell's eps or sweep budgets)."""
    wanted = suite.attack_suite(float(record["eps"]))
    training, measured = [], []
    if suite.max_train is not None and record.get("num_train", 0) > suite.max_train:
        training.append(f"num_train: {record['num_train']} -> at most {suite.max_train}")
    if suite.max_test is not None and record.get("num_test", 0) > suite.max_test:
        measured.append(f"num_test: {record['num_test']} -> at most {suite.max_test}")
    have = sorted(a for a in record.get("attacks", {}) if not a.startswith("adaptive"))
    want = sorted(s.label() for s in wanted.attacks if s.eps is None and s.kind not in ("adaptive", "transfer"))
    if have != want:
        measured.append(f"attacks: {have} -> {want}")
    if any(a.startswith("adaptive") for a in record.get("attacks", {})) and not any(
            s.kind == "adaptive" for s in wanted.attacks):
        measured.append("adaptive attacks: run -> not in the suite")
    have_sweep = sorted({(r["attack"], round(r["eps_255"], 3)) for r in record.get("suite_rows", [])
                         if r["attack"].endswith("-sweep")})
    want_sweep = sorted((s.label(), round(e * 255, 3)) for s in wanted.attacks if s.eps for e in s.eps)
    if have_sweep != want_sweep:
        measured.append(f"eps sweep: {have_sweep} -> {want_sweep}")
    return training, measured


def record_changes(suite: BenchmarkSuite, cell: Cell, record: dict[str, Any],
                   current=None) -> tuple[list[str], list[str]]:
    """How a cell's result `record` differs from what the suite would measure now, as (changes to what
    the detector was trained on: config and training-set limit; changes to the test-set limit or the
    attacks); both empty when it is current. Config fields added to robustad since take their
    defaults. `current`: the cell's preset config, when the caller has already built it."""
    current = _preset_config(suite, cell) if current is None else current
    try:
        recorded = type(current).from_dict(record.get("config") or {}, source=f"the config of cell {cell.id}")
    except (ConfigError, KeyError, TypeError) as err:
        return [f"its config does not parse in this version ({err})"], []
    training = config_changes(json_form(recorded.to_dict()), json_form(current.to_dict()))
    if "measurement" not in record:
        more_training, measured = _changes_shown_by_rows(suite, record)
        return training + more_training, measured
    then, now = dict(record["measurement"]), measurement(suite, float(current.evaluation.eps))
    if then.pop("max_train", None) != now.pop("max_train"):
        training.append(f"suite.max_train: {record['measurement'].get('max_train')} -> {suite.max_train}")
    return training, config_changes(then, now, prefix="suite.")


def stale_cell(suite: BenchmarkSuite, cell: Cell, out: Path) -> tuple[list[str], list[str]]:
    """record_changes() of the result file of `cell` in `out`."""
    return record_changes(suite, cell, read_cell(cell_path(out, cell)))


def retire_cell(out: Path, cell: Cell, keep_run: bool = False) -> Path:
    """Move a stale cell's result, and its training run unless `keep_run` (the detector is still the
    one the suite would train), under out/stale/ (kept, not deleted); return where."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out / STALE_DIR).mkdir(parents=True, exist_ok=True)
    target, n = out / STALE_DIR / f"{cell.id}-{stamp}", 1
    while True:  # a cell retired twice within one second gets a numbered folder
        try:
            target.mkdir()
            break
        except FileExistsError:
            target, n = out / STALE_DIR / f"{cell.id}-{stamp}-{n}", n + 1
    os.replace(cell_path(out, cell), target / cell_path(out, cell).name)
    run = out / RUNS_DIR / cell.id
    if run.exists() and not keep_run:
        os.replace(run, target / RUNS_DIR)
    return target


def run_cell(suite: BenchmarkSuite, cell: Cell, out: Path, log: Callable[[str], None] = print,
             progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one cell in this process; write and return its result."""
    import torch


    started = time.perf_counter()
    preset = suite.preset(cell.dataset, cell.normal)
    overrides = {**suite.train_overrides, "train.seed": cell.seed}
    config = _preset_config(suite, cell)
    kwargs = suite.data_kwargs(cell.dataset, cell.normal)
    kwargs.setdefault("root", None)
    split = load_dataset(cell.dataset, max_train=suite.max_train, max_test=suite.max_test, seed=cell.seed,
                         image_size=config.image_size, **kwargs)
    log(f"[{cell.id}] {split.describe()}; preset {preset}")
    t = time.perf_counter()
    detector = train_or_resume(preset, overrides, split.train, out / RUNS_DIR / cell.id, progress=progress,
                               log=lambda m: log(f"[{cell.id}] {m}"), method=cell.method)
    train_wall = time.perf_counter() - t
    info = getattr(detector, "fit_info_", {})

    with torch.no_grad():  # scoring time per image, outside any attack
        t = time.perf_counter()
        detector.score(split.test)
        score_ms = 1000 * (time.perf_counter() - t) / len(split.test)
    eps = float(config.evaluation.eps)
    attack_config = suite.attack_suite(eps)
    result = run_suite({cell.method: detector}, split.test, split.test_labels, attack_config,
                       log=lambda m: log(f"[{cell.id}] {m}"))
    rows = result.rows
    sweep = {f"{r['eps_255']:g}/255": r["auroc"] for r in rows if r["attack"].endswith("-sweep")}
    worst = result.auroc(cell.method, WORST, "both", eps)
    sweep[f"{eps * 255:g}/255"] = worst
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    record = {
        "cell": asdict(cell), "id": cell.id, "suite": suite.name, "preset": preset,
        "auroc_clean": result.auroc(cell.method, "clean"),
        "auroc_attack": worst,
        "eps": eps, "eps_255": round(eps * 255, 3),
        "attacks": {r["attack"]: r["auroc"] for r in rows if r["eps"] == eps and r["attack"] not in ("clean", WORST)},
        "eps_sweep": dict(sorted(sweep.items(), key=lambda kv: float(kv[0].split("/")[0]))),
        "train_seconds": info.get("train_seconds", train_wall), "train_wall_seconds": train_wall,
        "score_ms_per_image": score_ms, "attack_seconds": result.seconds,
        "peak_rss_mb": peak_rss_mb,
        "peak_cuda_mb": (torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
        "device": str(detector.device), "device_name": _device_name(detector.device),
        "torch_threads": torch.get_num_threads(),  # timings depend on it (--jobs gives each cell fewer)
        "num_train": int(split.train.shape[0]), "num_test": int(split.test.shape[0]),
        "num_test_anomalies": int(split.test_labels.sum()), "data": split.describe(),
        "config": config.to_dict(), "measurement": measurement(suite, eps), "notes": result.notes,
        "suite_rows": rows,
        "library_versions": library_versions(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - started,
    }
    path = cell_path(out, cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    log(f"[{cell.id}] clean {100 * record['auroc_clean']:.1f}%, worst case at {record['eps_255']:g}/255 "
        f"{100 * worst:.1f}% ({record['seconds']:.0f} s) -> {path}")
    return record


def _device_name(device) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


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
        elif (holder := lock_holder(_lock_path(out, cell))) is not None:
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
                f"delete {_lock_path(out, cell)})")
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
