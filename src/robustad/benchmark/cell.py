"""One benchmark cell in a fresh process: `python -m robustad.benchmark.cell SPEC_JSON [--status FILE]`.

--status: also write the exit code to FILE as {"exit": N} (a cluster job's launcher reads it there).

A process per cell makes the reported peak memory the cell's own and keeps one cell's crash
from taking the others down.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from robustad.benchmark.runner import CELL_PAUSED_EXIT_CODE, run_cell
from robustad.benchmark.suites import BenchmarkSuite, Cell
from robustad.errors import RobustADError, TrainingPaused
from robustad.files import atomic_write
from robustad.methods.training import training_deadline
from robustad.evaluation.suite import AttackSpec


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    status = Path(argv[2]) if len(argv) >= 3 and argv[1] == "--status" else None
    code = 1
    try:
        code = _run(argv[0])
        return code
    finally:
        if status is not None:
            atomic_write(status, json.dumps({"exit": code}))


def _run(spec_text: str) -> int:
    spec = json.loads(spec_text)
    data = spec["suite"]
    data["attacks"] = tuple(AttackSpec(**{**a, "variants": tuple(a["variants"]),
                                          "eps": tuple(a["eps"]) if a.get("eps") else None}) for a in data["attacks"])
    for key in ("methods", "seeds", "sweep_factors"):
        data[key] = tuple(data[key])
    suite = BenchmarkSuite(**data)
    cell = Cell(**spec["cell"])
    try:
        with training_deadline(spec.get("deadline")):
            run_cell(suite, cell, Path(spec["out"]), log=_say)
    except TrainingPaused as paused:
        _say(f"[{cell.id}] paused: {paused}")
        return CELL_PAUSED_EXIT_CODE
    except RobustADError as err:
        _say(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
