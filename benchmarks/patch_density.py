"""Does dividing patch distances by the bank's local density help raw-pixel patch kNN, clean and attacked?

pixel-patch-knn scores an image by its worst 8x8 patch's L2 distance to the nearest of 10,000
training patches. On a star field, normal crops with a rare bright galaxy score as high as crops
with a drawn defect: distances are large wherever the normal data are sparse. Here each bank patch
j gets a radius r_j (its distance to its k-th nearest other bank patch, raised to at least
floor x the median radius) and a query patch's score is min_j ||q - b_j|| / r_j (the idea of the
local outlier factor; robustad's `density_k` option, method pixel-patch-density).

Modes (all on 500 training crops, 100 test crops, seeded as the validation suite; PGD-50 is cosine,
one start, eps 2/255, both classes attacked, on the score itself):
    variants (default)  clean AUROC, AUROC per defect kind and under PGD-50 for each variant:
                        raw = plain distances, w3 = k 3, w3f1 = k 3 with the floor at the median,
                        w3p0.5 = distances divided by the radius's square root
    --choice            can the variant be chosen without test data? AUROC on 80 held-out training
                        crops and the same crops with robustad's synthetic defects (clean, PGD-10),
                        next to the test AUROC (clean, PGD-20), per variant
    --cobra-patch       COBRA-patch's learned patch features (cpu-highres preset, a random bank of
                        10,000 patches instead of the coreset) scored with density_k 0 and 3 (PGD-20);
                        --set KEY=VALUE changes its settings (backbone.taps=[2], adversarial.steps=7, ...)
Usage:
    PYTHONPATH=src python benchmarks/patch_density.py surfaces stars --seed 0 --variants raw,w3,w10
    PYTHONPATH=src python benchmarks/patch_density.py surfaces tissue --variants w3f0.1,w3f0.5,w3f1
    PYTHONPATH=src python benchmarks/patch_density.py surfaces stars --choice --variants raw,w3p0.5,w3,w10
    PYTHONPATH=src python benchmarks/patch_density.py surfaces stars --cobra-patch
Results are in BENCHMARKS.md.
"""

import argparse
import json
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from robustad.attacks.pgd import attack_score
from robustad.data.registry import load_dataset
from robustad.transforms.defects import SyntheticDefects

PATCH, STRIDE, BANK = 8, 4, 10_000
KINDS = ("crack", "spots", "smudge", "dent", "tint")


def patches(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, P, C*8*8] (64 px crops: the stride-4 grid reaches the edges, no padding)."""
    return F.unfold(x, PATCH, stride=STRIDE).transpose(1, 2)


def make_bank(images: torch.Tensor, seed: int) -> torch.Tensor:
    bank = torch.cat([patches(c) for c in images.split(100)]).flatten(0, 1)
    return bank[torch.randperm(len(bank), generator=torch.Generator().manual_seed(seed))[:BANK]].contiguous()


def radii(bank: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each bank patch to its k-th nearest other bank patch."""
    return torch.cat([torch.cdist(c, bank).topk(k + 1, dim=1, largest=False).values[:, k] for c in bank.split(2048)])


def parse_variant(name: str) -> tuple[int, float, float]:
    """'raw' -> plain distances; 'wK[fF][pP]' -> (k = K, floor F x median radius (default 0), radius power P
    (default 1: distances divided by the radius; 0.5: by its square root))."""
    if name == "raw":
        return 1, 0.0, 0.0
    match = re.fullmatch(r"w(\d+)(?:f([0-9.]+))?(?:p([0-9.]+))?", name)
    if not match:
        raise SystemExit(f"unknown variant {name!r}: use raw or wK[fF][pP] (e.g. w3, w3f1, w3p0.5)")
    return int(match[1]), float(match[2] or 0.0), float(match[3] or 1.0)


class WeightedPatchKNN:
    """max over patches of min_j ||q - b_j|| / scale_j: the score PGD attacks (nearest found without gradient)."""

    device = "cpu"

    def __init__(self, bank: torch.Tensor, scale: torch.Tensor):
        self.bank, self.scale = bank, scale

    def score(self, x: torch.Tensor) -> torch.Tensor:
        q = patches(x)
        n, p, d = q.shape
        q = q.reshape(n * p, d)
        with torch.no_grad():
            idx = torch.cat([(torch.cdist(c, self.bank) / self.scale).argmin(1) for c in q.detach().split(4096)])
        return ((q - self.bank[idx]).norm(dim=1) / self.scale[idx]).view(n, p).amax(1)


def scale_for(bank: torch.Tensor, variant: str) -> torch.Tensor:
    k, floor, power = parse_variant(variant)
    if power == 0:
        return torch.ones(len(bank))
    r = radii(bank, k)
    return r.clamp_min(float(r.median()) * floor + 1e-6) ** power


def aurocs(det, x: torch.Tensor, y: np.ndarray, steps: int) -> tuple[float, float]:
    with torch.no_grad():
        clean = roc_auc_score(y, det.score(x).numpy()) * 100
    adv = attack_score(det, x, torch.as_tensor(y), 2 / 255, "both", steps=steps, restarts=1, schedule="cosine", seed=0,
                       batch_size=50)
    with torch.no_grad():
        attacked = roc_auc_score(y, det.score(adv).numpy()) * 100
    return round(clean, 1), round(attacked, 1)


def clean_aurocs(split, s: np.ndarray) -> dict[str, float]:
    """Clean AUROC of test scores s, and per defect kind (the normal crops against that kind's)."""
    y = split.test_labels.numpy()
    kinds = [path.rsplit("-", 1)[-1] if "/anomaly/" in path else "normal" for path in split.test_paths]
    row = {"clean": roc_auc_score(y, s) * 100}
    for kind in KINDS:
        keep = np.array([k in ("normal", kind) for k in kinds])
        if y[keep].min() != y[keep].max():
            row[kind] = roc_auc_score(y[keep], s[keep]) * 100
    return row


def run_variants(split, variants: list[str], attack: bool, seed: int, tag: str) -> None:
    y = split.test_labels.numpy()
    bank = make_bank(split.train, seed)
    for variant in variants:
        det = WeightedPatchKNN(bank, scale_for(bank, variant))
        with torch.no_grad():
            s = det.score(split.test).numpy()
        row = {"variant": variant, **clean_aurocs(split, s)}
        if attack:
            started = time.time()
            row["pgd50"] = aurocs(det, split.test, y, 50)[1]
            row["attack_s"] = round(time.time() - started)
        print(tag, json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


def run_choice(split, variants: list[str], seed: int, tag: str) -> None:
    order = torch.randperm(len(split.train), generator=torch.Generator().manual_seed(seed))
    held, fit = split.train[order[:80]], split.train[order[80:]]
    defective, _ = SyntheticDefects()(held, torch.Generator().manual_seed(100 + seed))
    vx, vy = torch.cat([held, defective]), np.r_[np.zeros(80), np.ones(80)]
    bank_fit, bank_all = make_bank(fit, seed), make_bank(split.train, seed)
    y = split.test_labels.numpy()
    for variant in variants:
        val = aurocs(WeightedPatchKNN(bank_fit, scale_for(bank_fit, variant)), vx, vy, 10)
        test = aurocs(WeightedPatchKNN(bank_all, scale_for(bank_all, variant)), split.test, y, 20)
        print(tag, variant, "held-out + synthetic defects (clean, PGD-10):", val, "test (clean, PGD-20):", test,
              flush=True)


def run_cobra_patch(split, seed: int, tag: str, settings: list[str]) -> None:
    from robustad.config import parse_overrides
    from robustad.methods.catalog import build_detector

    started = time.time()
    det = build_detector("cobra-patch", "cpu-highres", {"train.seed": seed, "score.coreset_fraction": 1.0,
                                                          "score.max_candidates": BANK, **parse_overrides(settings)})
    tag = f"{tag} {' '.join(settings)}".strip()
    det.fit(split.train, progress=False)
    print(tag, "cobra-patch fit s", round(time.time() - started), flush=True)
    bank, y = det.scorer.bank.clone(), split.test_labels.numpy()
    for density_k in (0, 3):
        det.scorer.density_k = density_k
        det.scorer.set_bank(bank)
        print(tag, f"cobra-patch density_k {density_k} (clean, PGD-20):", aurocs(det, split.test, y, 20), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", help="surfaces or textures")
    p.add_argument("category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="raw,w3,w10,w3f1")
    p.add_argument("--no-attack", action="store_true")
    p.add_argument("--choice", action="store_true")
    p.add_argument("--cobra-patch", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --cobra-patch: a setting of its config, e.g. backbone.taps=[2]")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    split = load_dataset(args.dataset, category=args.category, max_train=500, max_test=100, seed=args.seed)
    tag = f"{args.dataset} {args.category} seed {args.seed}"
    variants = args.variants.split(",")
    for v in variants:
        parse_variant(v)
    if args.choice:
        run_choice(split, variants, args.seed, tag)
    elif args.cobra_patch:
        run_cobra_patch(split, args.seed, tag, args.set)
    else:
        run_variants(split, variants, not args.no_attack, args.seed, tag)


if __name__ == "__main__":
    main()
