"""SPSA against PGD on trained benchmark detectors: a gradient-masking check.

    PYTHONPATH=src .venv/bin/python benchmarks/spsa_check.py benchmarks/results/cpu-full-joint1-96steps \\
        --cells fashion-mnist-0-cobra-s0,mnist-3-cobra-s0 --images 40 --steps 50 --samples 64

For each cell (its detector in RESULTS/runs/<id>, its class data set loaded as the suite loaded it),
a seeded draw of --images test images is attacked at the cell's budget by cosine PGD-50 on the score
and by SPSA, which estimates the gradient from random probes. A score that masks its gradients
would leave PGD well above SPSA; without masking SPSA is the weaker of the two.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robustad.attacks.attack import PGD
from robustad.attacks.spsa import SPSA
from robustad.data.registry import load_dataset
from robustad.evaluation.metrics import auroc
from robustad.methods.registry import load_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--cells", required=True, help="cell ids, comma-separated (class data sets)")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suite = json.loads((args.results / "suite.json").read_text())
    for cell_id in args.cells.split(","):
        record = json.loads((args.results / "cells" / f"{cell_id}.json").read_text())
        cell = record["cell"]
        detector = load_detector(args.results / "runs" / cell_id, device="cpu")
        split = load_dataset(cell["dataset"], normal_classes=[int(cell["normal"])], max_train=suite["max_train"],
                             max_test=suite["max_test"], seed=cell["seed"])
        pick = torch.randperm(len(split.test_labels), generator=torch.Generator().manual_seed(0))[: args.images]
        x, y = split.test[pick], split.test_labels[pick]
        row = {"cell": cell_id, "images": len(y), "eps_255": record["eps_255"], "clean": auroc(detector.score(x), y)}
        started = time.perf_counter()
        row["pgd-50-cosine"] = auroc(detector.score(PGD(detector, eps=record["eps"], steps=50, schedule="cosine")(x, y)), y)
        row["pgd_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        spsa = SPSA(detector, eps=record["eps"], steps=args.steps, samples=args.samples, batch_size=len(y))
        row[f"spsa-{args.steps}x{args.samples}"] = auroc(detector.score(spsa(x, y)), y)
        row["spsa_seconds"] = time.perf_counter() - started
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
