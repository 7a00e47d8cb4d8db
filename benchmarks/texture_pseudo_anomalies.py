"""Which pseudo-anomaly can a CPU-sized COBRA learn on the semi-synthetic texture set?

Short runs without adversarial training (to isolate the pseudo-anomaly from AT), clean AUROC on
100 test images. Usage:
    PYTHONPATH=src python benchmarks/texture_pseudo_anomalies.py brick cutpaste:60 cutout:60 cutpaste+cutout:60
Each argument is PSEUDO_ANOMALIES:STEPS (several joined by +). Results are in BENCHMARKS.md.
"""

import sys
import time

import torch
from sklearn.metrics import roc_auc_score

from robustad.data.registry import load_dataset
from robustad.methods.catalog import build_detector


def main(category: str, specs: list[str]) -> None:
    for spec in specs:
        names, steps = spec.split(":")
        overrides = {"transforms.pseudo_anomalies": names.split("+"), "adversarial.enabled": False,
                     "train.epochs": 2, "train.steps_per_epoch": int(steps) // 2}
        det = build_detector("cobra", "textures-cpu", overrides)
        split = load_dataset("textures", category=category, image_size=det.config.image_size, max_test=100)
        started = time.time()
        det.fit(split.train, progress=False)
        last = det.fit_info_["history"][-1]
        with torch.no_grad():
            scores = det.score(split.test).numpy()
        losses = {k: round(v, 3) for k, v in last.items() if isinstance(v, float)}
        print(f"{category} {spec}: losses {losses} clean AUROC "
              f"{100 * roc_auc_score(split.test_labels.numpy(), scores):.1f} ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
