"""Train variants of the demo's detector (MNIST, normal digit 3) and attack each at several budgets.

    .venv/bin/python benchmarks/demo_variants.py --out runs/variants paper=adversarial.mode=paper \\
        reference=adversarial.mode=reference baseline=adversarial.enabled=false \\
        baseline-600-steps=adversarial.enabled=false,train.epochs=12 \\
        baseline-width16=adversarial.enabled=false,model.width=16

Each variant is the cpu-small preset with the given overrides, trained on 3,000 images of digit 3
(seed 0) and saved under --out (a saved variant is loaded, not retrained). `--channels 3` feeds the
grey digits as three equal channels, as the reference code does, so that attacks perturb each
channel on its own. Evaluation: 200 test images (100 normal, 100 anomalous, seed 0), PGD-20 on
the score itself (random start, step 2.5 * eps / 20, both targets) at each --eps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robustad import Cobra
from robustad.data.datasets import load_split
from robustad.evaluation.metrics import auroc
from robustad.methods.adversarial import pgd_ascend_loss
from robustad.methods.checkpoint import META_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="NAME=key=value[,key=value...]")
    parser.add_argument("--out", default="runs/variants")
    parser.add_argument("--eps", default="8,16,32", help="budgets in 1/255 units")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1)
    args = parser.parse_args()
    test = load_split("mnist", [3], max_train=3000, max_test=200, seed=0, channels=args.channels)
    train = test.train
    x, y = test.test, test.test_labels
    direction = torch.where(y == 0, 1.0, -1.0)  # raise normal scores, lower anomaly scores
    for item in args.variants:
        name, _, spec = item.partition("=")
        overrides = [kv for kv in spec.split(",") if kv]
        path = Path(args.out) / name
        started = time.perf_counter()
        if (path / META_FILE).is_file():
            det = Cobra.load(path)
        else:
            det = Cobra.from_preset("cpu-small", overrides=overrides).fit(train, progress=False)
            det.save(path)
        row = {"variant": name, "overrides": overrides, "fit_seconds": round(time.perf_counter() - started),
               "train_images_per_second": round(det.fit_info_.get("train_images_per_second", float("nan")), 1),
               "clean": round(100 * auroc(det.score(x), y), 1)}
        for eps in (int(e) for e in args.eps.split(",")):
            x_adv = pgd_ascend_loss(lambda z: (direction * det.score(z)).sum(), x, eps / 255, args.steps)
            row[f"pgd{args.steps}_{eps}/255"] = round(100 * auroc(det.score(x_adv), y), 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
