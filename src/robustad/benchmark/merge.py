"""One table from the cells of several runs of a suite (e.g. one machine ran some classes, another the rest).

The merged folder holds copies of the chosen cell files and `merged_from.json`, which names the
sources in order and which source each cell came from: the first source holding a cell wins, so
re-merging gives the same folder. Cells are merged only where they measure the same thing: same
suite, and for a (data set, method) the same training config, test-set size and attack list.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from robustad.benchmark.runner import CELLS_DIR
from robustad.benchmark.tables import read_cell
from robustad.errors import ConfigError

MERGE_FILE = "merged_from.json"


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a cell that must agree for two cells of one (data set, method) to share a table."""
    return {"suite": record.get("suite"), "config": record.get("config"), "num_train": record.get("num_train"),
            "num_test": record.get("num_test"), "eps_255": record.get("eps_255"),
            "attacks": sorted(record.get("attacks", {})),
            "measurement": record.get("measurement")}  # None in cells older than the field


def _differences(fingerprint: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Fields where two fingerprints disagree; a cell without a recorded measurement is judged by the rest."""
    return [k for k in fingerprint if fingerprint[k] != reference.get(k)
            and not (k == "measurement" and None in (fingerprint[k], reference.get(k)))]


def merge_cells(sources: list[str | Path], out: str | Path, suite: str | None = None,
                cell_ids: set[str] | None = None) -> dict[str, Any]:
    """Copy into out/cells every cell of `sources` (the first source holding a cell id wins),
    or only those in `cell_ids` when given.

    Returns the manifest also written to out/merged_from.json. Refuses, naming the cells, cells
    that do not measure the same thing, cells of another suite than `suite` (when given), and an
    `out` that is one of the sources.
    """
    out = Path(out)
    sources = [Path(s) for s in sources]
    if len(sources) < 2:
        raise ConfigError("merging needs at least two result folders")
    for src in sources:
        if not (src / CELLS_DIR).is_dir():
            raise ConfigError(f"{src} has no {CELLS_DIR}/ folder: it is not a benchmark result folder")
        if out.resolve() == src.resolve():
            raise ConfigError(f"--out {out} is also a source; merge into a new folder")
    chosen: dict[str, tuple[Path, Path]] = {}
    reference: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for src in sources:
        for path in sorted((src / CELLS_DIR).glob("*.json")):
            record = read_cell(path)
            if record["id"] in chosen or (cell_ids is not None and record["id"] not in cell_ids):
                continue
            if suite is not None and record.get("suite") != suite:
                raise ConfigError(f"{path} is a cell of suite {record.get('suite')!r}, not {suite!r}")
            key = (record["cell"]["dataset"], record["cell"]["method"])
            fingerprint = _comparable(record)
            if key in reference and _differences(fingerprint, reference[key][1]):
                other, theirs = reference[key]
                differ = ", ".join(_differences(fingerprint, theirs))
                raise ConfigError(f"{path} and {other} differ in {differ}: they did not measure the same thing, "
                                  "so they cannot share a table")
            if key not in reference or reference[key][1]["measurement"] is None:
                reference[key] = (str(path), fingerprint)  # prefer a cell that records its measurement
            chosen[record["id"]] = (src, path)
    if not chosen:
        raise ConfigError(f"no cell results in any of {', '.join(map(str, sources))}")
    target = out / CELLS_DIR
    if target.exists():  # a re-merge replaces the previous copies, so a cell removed upstream goes too
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for cid, (_, path) in sorted(chosen.items()):
        shutil.copyfile(path, target / path.name)
    manifest = {
        "rule": "the first source holding a cell id wins",
        "sources": [os.path.relpath(s, out) for s in sources],
        "cells": {cid: os.path.relpath(src, out) for cid, (src, _) in sorted(chosen.items())},
    }
    (out / MERGE_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
