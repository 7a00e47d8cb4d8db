"""Train variants of the demo's detector (MNIST, normal digit 3 by default) and attack each at several budgets.

    .venv/bin/python benchmarks/demo_variants.py --out runs/variants paper=adversarial.mode=paper \\
        reference=adversarial.mode=reference baseline=adversarial.enabled=false \\
        baseline-600-steps=adversarial.enabled=false,train.epochs=12 \\
        baseline-width16=adversarial.enabled=false,model.width=16

Each variant is the cpu-small preset with the given overrides, trained on 3,000 images of the
--digit (data and training seed --seed, default 0) and saved under --out (a saved variant is
loaded, not retrained). Another data set: `--data surfaces --category stars --preset cpu-highres
--max-train 500 --max-test 100 --eps 2` (the validation suite's sizes and budget). `--channels 3` feeds the
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
from robustad.data.registry import dataset_info
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
    parser.add_argument("--digit", type=int, default=3, help="the normal digit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split and of training")
    parser.add_argument("--restarts", type=int, default=0, help="PGD restarts: the worst of 1 + N runs per image")
    parser.add_argument("--data", default="mnist", help="data set (robustad data list)")
    parser.add_argument("--category", help="normal class or category of --data (default: --digit)")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--max-train", type=int, default=3000)
    parser.add_argument("--max-test", type=int, default=200)
    args = parser.parse_args()
    category = args.category or str(args.digit)
    if dataset_info(args.data).kind == "anomaly":
        which = {"category": category}
    else:
        which = {"normal_classes": [int(category)], **({"channels": args.channels} if args.data == "mnist" else {})}
    test = load_split(args.data, max_train=args.max_train, max_test=args.max_test, seed=args.seed, **which)
    train = test.train
    x, y = test.test, test.test_labels
    direction = torch.where(y == 0, 1.0, -1.0)  # raise normal scores, lower anomaly scores
    for item in args.variants:
        name, _, spec = item.partition("=")
        overrides = [kv for kv in spec.split(",") if kv] + [f"train.seed={args.seed}"]
        # the default digit and seed keep the plain name, as earlier runs saved them
        if args.data == "mnist":
            suffix = "" if (args.digit, args.seed) == (3, 0) else f"-digit{args.digit}-seed{args.seed}"
        else:
            suffix = f"-{args.data}-{category}-seed{args.seed}"
        path = Path(args.out) / f"{name}{suffix}"
        started = time.perf_counter()
        if (path / META_FILE).is_file():
            det = Cobra.load(path)
        else:
            det = Cobra.from_preset(args.preset, overrides=overrides).fit(train, progress=False)
            det.save(path)
        row = {"variant": name, "data": args.data, "category": category, "seed": args.seed, "overrides": overrides, "fit_seconds": round(time.perf_counter() - started),
               "train_seconds": round(det.fit_info_.get("train_seconds", float("nan"))),
               "train_images_per_second": round(det.fit_info_.get("train_images_per_second", float("nan")), 1),
               "guard": det.fit_info_.get("overfit_guard"),
               "pseudo_filter": det.fit_info_.get("pseudo_filter"),
               # per epoch: the shift head's held-out accuracy under the training attack / under PGD
               "guard_train_attack": [h.get("guard_train_attack") for h in det.fit_info_.get("history", [])],
               "guard_pgd": [h.get("guard_pgd") for h in det.fit_info_.get("history", [])],
               "clean": round(100 * auroc(det.score(x), y), 1)}
        for eps in (int(e) for e in args.eps.split(",")):
            worst = None
            for restart in range(1 + args.restarts):
                generator = torch.Generator().manual_seed(restart)
                x_adv = pgd_ascend_loss(lambda z: (direction * det.score(z)).sum(), x, eps / 255, args.steps,
                                        generator=generator)
                with torch.no_grad():
                    s = det.score(x_adv)
                # per image, the run that moved its score furthest toward the wrong side
                worst = s if worst is None else torch.where(direction * s > direction * worst, s, worst)
            row[f"pgd{args.steps}_{eps}/255"] = round(100 * auroc(worst, y), 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
