"""Can a nonlinear 1-Lipschitz patch embedding beat raw-pixel patches under attack?

pixel-patch-density scores an image by its worst 8x8 patch: min_j ||q - b_j|| / r_j over a bank of
training patches (r_j: the bank patch's distance to its 3rd-nearest neighbour). On stochastic
textures a normal patch is a new random draw of the texture, so even its nearest bank patch is far:
the distance mostly measures where the texture's grains happen to lie (their phase).

Here the patch is rotated by an orthogonal matrix W (192 x 192), the coordinates are cut into
groups, and each group's norm is one feature: e(q) = (||W_g q||)_g. Because W is orthogonal and a
norm is 1-Lipschitz, ||e(q) - e(p)|| <= ||q - p||: an L-inf attack moves a patch's features by no
more than it moves its pixels, as for the raw patches. A group's norm keeps the energy of a band
and drops its phase (independent subspace analysis), the invariance a texture detector wants.
The embedding scored is [a * q, sqrt(1 - a^2) * e(q)] (a = 0: energies only), still 1-Lipschitz.

W variants:
    dct-block     8x8 DCT per opponent colour channel; groups = 2x2 blocks of frequencies (DC alone)
    dct-ring      the same DCT; groups = frequencies with the same max(u, v) (DC alone)
    learned       W starts at dct-block and is trained (orthogonal parametrisation) with a margin
                  loss: held-out normal crops' image scores below those of the same crops with
                  robustad's synthetic defects by 2 x (the patch's L2 budget at 2/255), the
                  contrastive idea of COBRA with its pseudo-anomalies, on the 1-Lipschitz score.
Prints clean AUROC, AUROC per defect kind and AUROC under PGD-50 (cosine, one start, eps 2/255,
both classes attacked, on the score itself). Usage:
    PYTHONPATH=src python benchmarks/patch_energy.py surfaces stars --seed 0 --variants raw,dct-block:0,dct-block:0.5
Results are in BENCHMARKS.md.
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from robustad.attacks.pgd import attack_score
from robustad.data.registry import load_dataset
from robustad.transforms.defects import SyntheticDefects

from patch_density import PATCH, clean_aurocs, make_bank, patches  # noqa: E402  (the script's own folder)

DENSITY_K = 3
EPS = 2 / 255


def dct_matrix(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


def dct_basis(channels: int) -> torch.Tensor:
    """Orthogonal [C*64, C*64]: an opponent colour rotation, then the 2-D DCT of each channel.
    Rows are ordered channel-major, then (u, v)."""
    d2 = torch.kron(dct_matrix(PATCH), dct_matrix(PATCH))  # [64, 64], row u*8+v
    if channels == 1:
        return d2.float()
    colour = torch.tensor([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=torch.float64)
    colour = colour / colour.norm(dim=1, keepdim=True)
    return torch.kron(colour, d2).float()  # unfold order is channel-major too


def groups(kind: str, channels: int) -> list[list[int]]:
    """Index groups of the rotated coordinates (every coordinate in exactly one group)."""
    out = []
    for c in range(channels):
        base = c * PATCH * PATCH
        buckets: dict[tuple, list[int]] = {}
        for u in range(PATCH):
            for v in range(PATCH):
                if u == v == 0:
                    key = ("dc",)
                elif kind == "dct-ring":
                    key = (max(u, v),)
                else:
                    key = (u // 2, v // 2, u == 0 and v == 0)
                buckets.setdefault(key, []).append(base + u * PATCH + v)
        out += list(buckets.values())
    return out


class Embedding(nn.Module):
    """q [Q, D] -> [a q, sqrt(1 - a^2) e(q)]; 1-Lipschitz for any orthogonal W."""

    def __init__(self, w: torch.Tensor, group_index: list[list[int]], alpha: float, learn: bool = False):
        super().__init__()
        self.rot = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            self.rot.weight.copy_(w)
        if learn:
            nn.utils.parametrizations.orthogonal(self.rot)  # stays exactly orthogonal while it trains
        size = max(len(g) for g in group_index)
        # pad each group to the same size with a dummy zero coordinate, so the norms are one gather
        index = torch.full((len(group_index), size), w.shape[0], dtype=torch.long)
        for i, g in enumerate(group_index):
            index[i, : len(g)] = torch.tensor(g)
        self.register_buffer("index", index)
        self.alpha = alpha

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        z = self.rot(q)
        z = torch.cat([z, torch.zeros_like(z[:, :1])], dim=1)
        energy = (z[:, self.index].pow(2).sum(dim=2) + 1e-12).sqrt()
        parts = [math.sqrt(1 - self.alpha**2) * energy]
        if self.alpha > 0:
            parts.insert(0, self.alpha * q)
        return torch.cat(parts, dim=1)


class EmbeddedPatchKNN:
    """max over patches of min_j ||f(q) - f(b_j)|| / r_j (nearest found without gradient): what PGD attacks."""

    device = "cpu"

    def __init__(self, embed, bank_patches: torch.Tensor, density: bool = True):
        self.embed = embed
        with torch.no_grad():
            self.bank = torch.cat([embed(c) for c in bank_patches.split(4096)])
            if density:
                r = torch.cat([torch.cdist(c, self.bank).topk(DENSITY_K + 1, dim=1, largest=False).values[:, DENSITY_K]
                               for c in self.bank.split(2048)])
                self.scale = r.clamp_min(0.1 * float(r.median()))
            else:
                self.scale = torch.ones(len(self.bank))

    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        q = patches(x)
        n, p, d = q.shape
        f = self.embed(q.reshape(n * p, d))
        with torch.no_grad():
            idx = torch.cat([(torch.cdist(c, self.bank) / self.scale).argmin(1) for c in f.detach().split(4096)])
        return ((f - self.bank[idx]).norm(dim=1) / self.scale[idx]).view(n, p)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_scores(x).amax(1)


def learn_rotation(embed: Embedding, train: torch.Tensor, seed: int, steps: int, log_tag: str) -> None:
    """Margin training of W on held-out crops against the same crops with synthetic defects.

    The bank (other training crops) is re-embedded every 10 steps; between, the nearest entries are
    searched with the current embedding but the bank's features stay fixed, so each step is cheap.
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=g)
    held, rest = train[order[:100]], train[order[100:]]
    bank_patches = make_bank(rest, seed)
    margin = 2 * EPS * math.sqrt(patches(train[:1]).shape[2])  # the patch's L2 budget, both sides
    opt = torch.optim.Adam(embed.parameters(), lr=1e-3)
    defects = SyntheticDefects()
    for step in range(steps):
        if step % 10 == 0:
            scorer = EmbeddedPatchKNN(embed, bank_patches, density=False)
        pick = torch.randint(len(held), (16,), generator=g)
        normal = held[pick]
        defective, _ = defects(normal, g)
        s_normal = scorer.patch_scores(normal).amax(1)
        s_defect = scorer.patch_scores(defective).amax(1)
        # every defect should score above every normal crop by the margin (scale: the margin)
        gap = (s_normal[:, None] - s_defect[None, :] + margin) / margin
        loss = F.softplus(4 * gap).mean() / 4
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(log_tag, f"step {step} loss {loss.item():.3f} normal {s_normal.mean():.3f} "
                  f"defect {s_defect.mean():.3f}", flush=True)


def evaluate(scorer, split, attack: bool) -> dict:
    y = split.test_labels.numpy()
    with torch.no_grad():
        row = clean_aurocs(split, scorer.score(split.test).numpy())
    if attack:
        started = time.time()
        adv = attack_score(scorer, split.test, split.test_labels, EPS, "both", steps=50, restarts=1,
                           schedule="cosine", seed=0, batch_size=50)
        with torch.no_grad():
            row["pgd50"] = roc_auc_score(y, scorer.score(adv).numpy()) * 100
        row["attack_s"] = round(time.time() - started)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="raw,dct-block:0,dct-block:0.5",
                   help="raw, or W:alpha with W in dct-block, dct-ring, learned")
    p.add_argument("--no-density", action="store_true", help="plain distances instead of pixel-patch-density's")
    p.add_argument("--no-attack", action="store_true")
    p.add_argument("--learn-steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    split = load_dataset(args.dataset, category=args.category, max_train=500, max_test=100, seed=args.seed)
    channels = split.train.shape[1]
    bank_patches = make_bank(split.train, args.seed)
    tag = f"{args.dataset} {args.category} seed {args.seed}"
    for variant in args.variants.split(","):
        started = time.time()
        if variant == "raw":
            embed = nn.Identity()
        else:
            kind, alpha = variant.split(":")
            group_kind = "dct-block" if kind == "learned" else kind
            embed = Embedding(dct_basis(channels), groups(group_kind, channels), float(alpha), learn=kind == "learned")
            if kind == "learned":
                learn_rotation(embed, split.train, args.seed, args.learn_steps, f"{tag} {variant}")
        embed.requires_grad_(False)
        scorer = EmbeddedPatchKNN(embed, bank_patches, density=not args.no_density)
        row = {"variant": variant, "density": not args.no_density, **evaluate(scorer, split, not args.no_attack),
               "total_s": round(time.time() - started)}
        print(tag, json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
