"""Does a torchrun run train the same detector as one process? Clean AUROC of COBRA on digits, per seed.

Each seed is trained twice at the preset's global batch: once in one process (one thread), once by
`torchrun --standalone --nproc-per-node 2` (one thread per process), then scored on the test split.

    PYTHONPATH=src .venv/bin/python benchmarks/distributed_parity.py --classes 3,8 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

from robustad.data.datasets import load_split
from robustad.methods.registry import load_detector


def train(args: list[str], processes: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    if processes > 1:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        command = [torchrun, "--standalone", "--nproc-per-node", str(processes), "-m", "robustad", *args]
    else:
        command = [sys.executable, "-m", "robustad", *args]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(result.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--method", default="cobra")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for normal in opts.classes.split(","):
            split = load_split("digits", normal_classes=[int(normal)])
            for seed in opts.seeds.split(","):
                row = {"class": int(normal), "seed": int(seed)}
                for processes in (1, 2):
                    out = Path(tmp) / f"{normal}-{seed}-{processes}"
                    seconds = train(["train", "--data", "digits", "--normal-class", normal, "--method", opts.method,
                                     "--set", f"train.seed={seed}", "--out", str(out), "--quiet"], processes)
                    scores = load_detector(out).decision_function(split.test)
                    row[f"auroc_{processes}"] = 100 * roc_auc_score(split.test_labels.numpy(), scores)
                    row[f"seconds_{processes}"] = seconds
                rows.append(row)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    gaps = [abs(r["auroc_1"] - r["auroc_2"]) for r in rows]
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    print(f"mean AUROC one process {mean('auroc_1'):.2f}, two processes {mean('auroc_2'):.2f}; "
          f"largest gap {max(gaps):.2f} points; mean time {mean('seconds_1'):.0f} s vs {mean('seconds_2'):.0f} s")


if __name__ == "__main__":
    main()
