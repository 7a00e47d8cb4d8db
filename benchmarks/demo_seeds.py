"""The `make demo` comparison over several training seeds: COBRA against its non-robust twin.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 0-7 --out runs/demo-seeds

One seed of the demo says little about the gap between the two detectors: the twin's clean AUROC
alone moves by several points between training seeds (and between CPUs, which order float sums
differently). This trains both of the demo's detectors (the cpu-small preset with and without
adversarial training) at each `train.seed`, on the demo's data (MNIST digit 3, 3,000 training
images, 250 test images, data seed 0), and attacks each with the demo's attacks (PGD-50 at 8/255
and PGD-20 at 32/255, target both, through `evaluate_robustness`, as `robustad demo` does).
`train.seed=0` is the demo itself, so its row must match the demo's report on the same machine.

Prints one JSON row per (seed, detector), then mean, standard deviation and the per-seed gap
COBRA minus twin. Finished detectors in --out are loaded, not retrained.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

from robustad.attacks.base import AttackConfig
from robustad.evaluation.robustness import evaluate_robustness
from robustad.pipeline import DEMO_DIGIT, DataSpec, load_data, train_or_resume

DETECTORS = {"cobra": {}, "baseline": {"adversarial.enabled": False}}
ATTACKS = {"8/255": AttackConfig(name="pgd", eps="8/255", steps=50, restarts=1, target="both"),
           "32/255": AttackConfig(name="pgd", eps="32/255", steps=20, restarts=1, target="both")}


def parse_seeds(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5]."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise argparse.ArgumentTypeError(f"seeds must look like 0-7 or 0,3,5, got {text!r}")
        seeds += range(int(match[1]), int(match[2] or match[1]) + 1)
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default="0-4", help="training seeds, e.g. 0-7 or 0,3,5")
    parser.add_argument("--out", default="runs/demo-seeds")
    args = parser.parse_args()
    split = load_data(DataSpec(name="mnist", normal_classes=[DEMO_DIGIT], max_train=3000, max_test=250, seed=0))
    rows = []
    for seed in args.seeds:
        for name, overrides in DETECTORS.items():
            started = time.perf_counter()
            detector = train_or_resume("cpu-small", {**overrides, "train.seed": seed}, split.train,
                                       Path(args.out) / f"seed{seed}" / name, progress=False, log=lambda m: None)
            row = {"seed": seed, "detector": name, "train_seconds": detector.fit_info_.get("train_seconds")}
            for eps, attack in ATTACKS.items():
                result = evaluate_robustness(detector, split.test, split.test_labels, attack)
                row["clean"] = round(100 * result.auroc_clean, 1)
                row[eps] = round(100 * result.auroc_attack, 1)
            row["seconds"] = round(time.perf_counter() - started)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for column in ("clean", *ATTACKS):
        by = {name: [r[column] for r in rows if r["detector"] == name] for name in DETECTORS}
        gaps = [a - b for a, b in zip(by["cobra"], by["baseline"])]
        summary[column] = {name: _stats(values) for name, values in by.items()} | {"gap cobra - baseline": _stats(gaps)}
    print(json.dumps({"seeds": len(rows) // len(DETECTORS), "summary": summary}, indent=1))


def _stats(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.1f} +- {spread:.1f} (min {min(values):.1f}, max {max(values):.1f})"


if __name__ == "__main__":
    main()
