"""Does a patch subspace learned from synthetic defects make raw-pixel patch kNN better, clean or attacked?

pixel-patch-knn compares 8x8 pixel patches (every 4 px) with a bank of training patches. Here the
patches are first projected on d orthonormal directions (so the projected distance is still
1-Lipschitz in the pixels) chosen in closed form from robustad's synthetic defects
(robustad.transforms.defects) painted on held-out training images: the top eigenvectors of
C_defect - C_normal, the covariances of the raw residuals to the nearest bank patch of the defect
patches and of each normal image's three farthest patches, refitted once with the projected
neighbours. `--pool 2` instead compares patches of the image average-pooled by 2 (no learning).
Prints clean AUROC, AUROC per defect kind and AUROC under PGD-50 (cosine, one start, eps 2/255,
both classes attacked) per variant; d = 0 is plain pixel-patch-knn. Usage:
    PYTHONPATH=src python benchmarks/patch_subspace.py surfaces tissue --seed 0 --dims 0,32,16
    PYTHONPATH=src python benchmarks/patch_subspace.py surfaces stars --pool 2 --dims 0 --no-attack
Results are in BENCHMARKS.md.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from robustad.attacks.pgd import attack_score
from robustad.data.registry import load_dataset
from robustad.methods.reference.detector import PixelPatchKNN
from robustad.transforms.defects import SyntheticDefects

PATCH, STRIDE, BANK = 8, 4, 10_000


def patches(x: torch.Tensor, pool: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, P, C*8*8] patches, replicate-padded to reach the edges (as pixel-patch-knn)."""
    if pool > 1:
        x = F.avg_pool2d(x, pool)
    h, w = x.shape[-2:]
    ph, pw = (-(h - PATCH)) % STRIDE, (-(w - PATCH)) % STRIDE
    x = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    return F.unfold(x, PATCH, stride=STRIDE).transpose(1, 2)


def nearest_residuals(queries: torch.Tensor, bank: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Raw residual of each query to its nearest bank patch, nearest measured after projecting by w."""
    projected = bank @ w.T
    idx = torch.cat([torch.cdist(q @ w.T, projected).argmin(1) for q in queries.split(4096)])
    return queries - bank[idx]


def learn_subspace(bank, normals, defective, coverage, dims: int, pool: int, rounds: int = 2) -> torch.Tensor:
    w = torch.eye(bank.shape[1])
    for _ in range(rounds):
        qn = patches(normals, pool)
        rn = nearest_residuals(qn.flatten(0, 1), bank, w).view(qn.shape)
        farthest = (rn @ w.T).norm(dim=2).topk(3, dim=1).indices  # the patches that set a normal image's score
        rn = torch.gather(rn, 1, farthest.unsqueeze(-1).expand(-1, -1, rn.shape[2])).flatten(0, 1)
        ra = nearest_residuals(patches(defective, pool)[coverage > 0.2], bank, w)
        gap = (ra.T @ ra / len(ra) - rn.T @ rn / len(rn)).double()
        w = torch.linalg.eigh(gap).eigenvectors[:, -dims:].T.float().contiguous()
    return w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dims", default="0,32,16", help="projection sizes; 0 = raw patches")
    p.add_argument("--pool", type=int, default=1)
    p.add_argument("--no-attack", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    split = load_dataset(args.dataset, category=args.category, max_train=500, max_test=100, seed=args.seed)
    y = split.test_labels.numpy()
    kinds = [path.rsplit("-", 1)[-1] if "/anomaly/" in path else "normal" for path in split.test_paths]
    det = PixelPatchKNN.from_preset("cpu-small", overrides={"seed": args.seed})
    det.fit(split.train, progress=False)  # threshold and bookkeeping; the bank is replaced below
    order = torch.randperm(len(split.train), generator=torch.Generator().manual_seed(1000 + args.seed))
    held = split.train[order[:100]]  # the subspace is fitted on these; the bank never holds them
    bank = torch.cat([patches(c, args.pool) for c in split.train[order[100:]].split(100)]).flatten(0, 1)
    bank = bank[torch.randperm(len(bank), generator=torch.Generator().manual_seed(args.seed))[:BANK]]
    painted = [SyntheticDefects()(held, torch.Generator().manual_seed(2000 + 10 * args.seed + r)) for r in range(3)]
    defective, masks = torch.cat([d for d, _ in painted]), torch.cat([m for _, m in painted])
    pooled = F.avg_pool2d(masks, args.pool) if args.pool > 1 else masks
    coverage = patches(pooled, 1).mean(dim=2)
    for dims in (int(v) for v in args.dims.split(",")):
        w = torch.eye(bank.shape[1]) if dims == 0 else learn_subspace(bank, held, defective, coverage, dims, args.pool)
        det.scorer.bank = (bank @ w.T).contiguous()
        det.scorer.features = lambda x, w=w: patches(x, args.pool) @ w.T
        with torch.no_grad():
            s = det.score(split.test).numpy()
        row = {"variant": f"d{dims}" if dims else "raw", "pool": args.pool, "clean": roc_auc_score(y, s) * 100}
        for kind in sorted(set(kinds) - {"normal"}):
            keep = np.array([k in ("normal", kind) for k in kinds])
            row[kind] = roc_auc_score(y[keep], s[keep]) * 100
        if not args.no_attack:
            started = time.time()
            adv = attack_score(det, split.test, split.test_labels, 2 / 255, "both", steps=50, restarts=1,
                               schedule="cosine", seed=0, batch_size=50)
            with torch.no_grad():
                row["pgd50"] = roc_auc_score(y, det.score(adv).numpy()) * 100
            row["attack_s"] = round(time.time() - started)
        print(args.dataset, args.category, args.seed,
              json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
