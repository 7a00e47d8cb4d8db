"""How many views and shifts COBRA's score needs: AUROC against the score's cost, on trained detectors.

    PYTHONPATH=src .venv/bin/python benchmarks/score_views.py benchmarks/results/cpu-full-joint1-96steps \\
        --settings 10:all,0:all,0:identity+rotate180,0:identity --attack 0:all,0:identity+rotate180

A setting is VIEWS:SHIFTS, the score's `score.views` and `score.shifts` ("all" = every shift, as
CSI and the reference code do; "10:all" is the reference code's own scoring, 10 seeded augmented
samples of each of the K shifts). Each one costs max(1, VIEWS) x |SHIFTS| forward passes per image.

For every cell of a finished benchmark run (RESULTS/cells/*.json, the detector in RESULTS/runs/<id>),
the trained network is rescored under each setting: its feature bank is rebuilt from the same
training images under those views and shifts, and the clean AUROC is taken on the cell's test split
(loaded as the suite loaded it). The settings in --attack are also attacked with cosine PGD on the
score at the cell's budget (a fresh attack per setting, since each setting is another score).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from robustad.attacks.attack import PGD
from robustad.data.registry import load_dataset
from robustad.evaluation.metrics import auroc
from robustad.methods.baseline_common import load_normal_images
from robustad.methods.cobra.detector import Cobra
from robustad.methods.registry import load_detector


def parse_setting(text: str) -> tuple[int, list[str] | None]:
    views, shifts = text.split(":")
    return int(views), None if shifts == "all" else shifts.split("+")


def rescored(detector: Cobra, train_images: torch.Tensor, views: int, shifts: list[str] | None) -> Cobra:
    """The same trained network under another score setting, its bank rebuilt from the same images."""
    overrides = {"score.views": views, "score.shifts": shifts}
    twin = Cobra(detector.config.with_overrides(overrides))
    twin._build(detector.in_channels_, detector.image_size_, torch.device("cpu"))
    twin.net.load_state_dict(detector.net.state_dict())
    twin.net.eval()
    # the training images fit() kept for the bank: the same hold-out split and bank subset
    x = load_normal_images(train_images, twin.resize_to)
    kept, holdout = twin._split_holdout(x)
    twin.scorer.fit_bank(twin._bank_subset(kept), twin.config.score.batch_size)
    twin._calibrate(holdout)  # the attacks read the score's own centre and scale
    return twin


def passes(setting: str, num_shifts: int = 4) -> int:
    views, shifts = parse_setting(setting)
    return max(1, views) * (num_shifts if shifts is None else len(shifts))


def summarise(path: Path) -> str:
    """A markdown table of the mean AUROC per data set and setting over the cells in a results file."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    datasets = sorted({r["cell"].rsplit("-", 3)[0] for r in rows})
    settings = [k for k in rows[0] if ":" in k]
    lines = ["| score (views:shifts) | passes / image | " + " | ".join(f"{d} clean / PGD" for d in datasets) + " |",
             "|---|---|" + "---|" * len(datasets)]
    for setting in settings:
        cells = []
        for d in datasets:
            mine = [r[setting] for r in rows if r["cell"].rsplit("-", 3)[0] == d]
            clean = 100 * sum(e["clean"] for e in mine) / len(mine)
            hit = [e["attacked"] for e in mine if "attacked" in e]
            cells.append(f"{clean:.1f} / " + (f"{100 * sum(hit) / len(hit):.1f}" if hit else "-") + f" ({len(mine)})")
        lines.append(f"| {setting} | {passes(setting)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--settings", default="10:all,4:all,0:all,0:identity+rotate180,0:identity")
    parser.add_argument("--attack", default="", help="settings also attacked (comma-separated)")
    parser.add_argument("--attack-steps", type=int, default=50)
    parser.add_argument("--cells", default="", help="only these cell ids (comma-separated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="append one JSON line per cell here")
    parser.add_argument("--summary", action="store_true", help="only print the table of an --out file")
    args = parser.parse_args()
    if args.summary:
        print(summarise(args.out))
        return
    torch.set_num_threads(args.threads)
    settings = args.settings.split(",")
    attacked = set(filter(None, args.attack.split(",")))
    suite_data = json.loads((args.results / "suite.json").read_text())
    max_train, max_test = suite_data["max_train"], suite_data["max_test"]
    wanted = set(filter(None, args.cells.split(",")))
    for path in sorted((args.results / "cells").glob("*.json")):
        record = json.loads(path.read_text())
        cell = record["cell"]
        if wanted and record["id"] not in wanted:
            continue
        detector = load_detector(args.results / "runs" / record["id"], device="cpu")
        kwargs = {"normal_classes": [int(cell["normal"])]}  # the class data sets this study is for
        split = load_dataset(cell["dataset"], max_train=max_train, max_test=max_test, seed=cell["seed"],
                             image_size=detector.config.image_size, **kwargs)
        labels = split.test_labels
        row = {"cell": record["id"], "published": {"clean": record["auroc_clean"], "attacked": record["auroc_attack"]}}
        for setting in settings:
            views, shifts = parse_setting(setting)
            twin = rescored(detector, split.train, views, shifts)
            with torch.no_grad():
                started = time.perf_counter()
                scores = twin.score(split.test)
                ms = 1000 * (time.perf_counter() - started) / len(split.test)
            entry = {"clean": auroc(scores, labels), "score_ms": ms}
            if setting in attacked:
                attack = PGD(twin, eps=record["eps"], steps=args.attack_steps, schedule="cosine", seed=cell["seed"])
                adv = attack(split.test, labels)
                with torch.no_grad():
                    entry["attacked"] = auroc(twin.score(adv), labels)
            row[setting] = entry
            print(f"{record['id']} {setting}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()), flush=True)
        row["machine"] = platform.processor() or platform.machine()
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
