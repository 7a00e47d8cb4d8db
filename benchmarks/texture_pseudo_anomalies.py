"""Which pseudo-anomaly, views and optimiser let a CPU-sized COBRA learn the semi-synthetic textures?

Short runs of the `textures-cpu` preset, without adversarial training unless asked (to isolate
the pseudo-anomaly from AT); prints the last epoch's losses and the clean AUROC. Usage:
    PYTHONPATH=src python benchmarks/texture_pseudo_anomalies.py brick cutpaste:60 cutout:60 cutpaste+cutout:60
    PYTHONPATH=src python benchmarks/texture_pseudo_anomalies.py brick cutpaste:480 --max-test 200 \\
        --set transforms.jitter_p=0 --set train.optimizer=adam --set train.lr=0.001 --set train.epochs=4
Each positional argument after the category is PSEUDO_ANOMALIES:STEPS (several joined by +);
STEPS is split evenly over train.epochs (2 unless set). `--set` values are read as JSON where
they parse (numbers, true/false, lists), else as strings. Results are in BENCHMARKS.md.
"""

import argparse
import json
import time

import torch
from sklearn.metrics import roc_auc_score

from robustad.data.registry import load_dataset
from robustad.methods.catalog import build_detector


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("category", help="brick, grass or gravel")
    parser.add_argument("specs", nargs="+", help="PSEUDO_ANOMALIES:STEPS, e.g. cutpaste:240 or cutpaste+cutout:60")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override for every run (repeatable)")
    parser.add_argument("--max-test", type=int, default=100, help="test images (default 100)")
    args = parser.parse_args()
    extra = {}
    for item in args.set:
        field, _, value = item.partition("=")
        extra[field] = _value(value)
    for spec in args.specs:
        names, steps = spec.split(":")
        overrides = {"adversarial.enabled": False, "train.epochs": 2, **extra,
                     "transforms.pseudo_anomalies": names.split("+")}
        overrides["train.steps_per_epoch"] = int(steps) // int(overrides["train.epochs"])
        det = build_detector("cobra", "textures-cpu", overrides)
        split = load_dataset("textures", category=args.category, image_size=det.config.image_size,
                             max_test=args.max_test)
        started = time.time()
        det.fit(split.train, progress=False)
        last = det.fit_info_["history"][-1]
        with torch.no_grad():
            scores = det.score(split.test).numpy()
        losses = {k: round(v, 3) for k, v in last.items() if isinstance(v, float)}
        print(f"{args.category} {spec} {' '.join(args.set)}: losses {losses} clean AUROC "
              f"{100 * roc_auc_score(split.test_labels.numpy(), scores):.1f} ({time.time() - started:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
