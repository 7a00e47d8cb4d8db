"""Run benchmark cells: train (or resume), evaluate under the suite's attacks, write one JSON per cell."""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from robustad.benchmark.suites import BenchmarkSuite, Cell
from robustad.benchmark.tables import read_cell
from robustad.data.registry import load_dataset
from robustad.errors import ConfigError
from robustad.evaluation.report import write_json
from robustad.evaluation.suite import WORST, run_suite
from robustad.files import try_lock
from robustad.methods.catalog import build_detector
from robustad.pipeline import train_or_resume
from robustad.provenance import RunRecord, json_form, library_versions

# a cell process's exit code when its training stopped at the time limit (it resumes next run)
CELL_PAUSED_EXIT_CODE = 3

CELLS_DIR = "cells"
RUNS_DIR = "runs"
STALE_DIR = "stale"  # results of cells whose config has changed since, kept for reference


def cell_path(out: Path, cell: Cell) -> Path:
    return out / CELLS_DIR / f"{cell.id}.json"


def lock_path(out: Path, cell: Cell) -> Path:
    return out / CELLS_DIR / f"{cell.id}.running"


def claim_cell(out: Path, cell: Cell) -> str | None:
    """Mark `cell` as run by this process, so that runners sharing `out` never run it twice.

    Returns None when claimed, else a description of the runner that holds it. A lock left by a
    process that is gone (killed runner) is taken over.
    """
    return try_lock(lock_path(out, cell))


def release_cell(out: Path, cell: Cell) -> None:
    lock_path(out, cell).unlink(missing_ok=True)


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
    then = RunRecord(config=json_form(recorded.to_dict()), measurement=record.get("measurement"))
    now = RunRecord(config=json_form(current.to_dict()),
                    measurement=measurement(suite, float(current.evaluation.eps)) if "measurement" in record else None)
    changes = then.changes(now)
    # the training-set limit changes the detector, the other measurement settings only its figures
    retrains = [c for c in changes if c.startswith(("config.", "suite.max_train:"))]
    measured = [c for c in changes if c not in retrains]
    if "measurement" not in record:
        more_training, measured = _changes_shown_by_rows(suite, record)
        retrains += more_training
    return retrains, measured


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
        # the suite's training overrides with any --set: what a check of the cell against its preset must apply
        "train_overrides": json_form(dict(suite.train_overrides)),
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
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
