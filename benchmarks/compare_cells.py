"""Compare the cells two benchmark runs share: how far a re-run (another machine, thread count,
library version) moves clean and attacked AUROC.

    PYTHONPATH=src .venv/bin/python benchmarks/compare_cells.py \
        benchmarks/results/cpu-full benchmarks/results/cpu-full-h100
Prints one line per shared cell, the median / mean / largest absolute difference in AUROC
points, and each method's mean over the shared cells in both runs.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from robustad.benchmark.tables import load_cells


def compare(a_dir: Path, b_dir: Path) -> str:
    a = {c["id"]: c for c in load_cells(a_dir)}
    b = {c["id"]: c for c in load_cells(b_dir)}
    shared = sorted(set(a) & set(b))
    if not shared:
        raise SystemExit(f"no cell id is in both {a_dir} and {b_dir}")
    lines = [f"{len(shared)} shared cells; AUROC % in {a_dir.name} -> {b_dir.name}"]
    deltas: dict[str, list[float]] = {"clean": [], "attacked": []}
    per_method: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for cid in shared:
        x, y = a[cid], b[cid]
        pair = (100 * x["auroc_clean"], 100 * y["auroc_clean"], 100 * x["auroc_attack"], 100 * y["auroc_attack"])
        deltas["clean"].append(abs(pair[1] - pair[0]))
        deltas["attacked"].append(abs(pair[3] - pair[2]))
        per_method[x["method"]].append(pair)
        lines.append(f"  {cid:32s} clean {pair[0]:5.1f} -> {pair[1]:5.1f}   attacked {pair[2]:5.1f} -> {pair[3]:5.1f}")
    for kind, d in deltas.items():
        lines.append(f"|difference| {kind}: median {statistics.median(d):.1f}, mean {statistics.mean(d):.1f}, "
                     f"max {max(d):.1f}")
    for method, pairs in sorted(per_method.items()):
        means = [statistics.mean(p[i] for p in pairs) for i in range(4)]
        lines.append(f"{method} ({len(pairs)} cells): clean {means[0]:.1f} -> {means[1]:.1f}, "
                     f"attacked {means[2]:.1f} -> {means[3]:.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path, help="a benchmark output folder (with cells/)")
    parser.add_argument("run_b", type=Path, help="another one")
    args = parser.parse_args()
    print(compare(args.run_a, args.run_b))


if __name__ == "__main__":
    main()
