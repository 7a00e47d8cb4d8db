"""Scoring against a memory bank of patch features: what the kNN baseline and COBRA-patch share.

A subclass says how an image becomes patch features, ``features(x) -> [N, P, D]``; this module
keeps the bank (a greedy k-center coreset of the training patches), finds the nearest bank
entries of every patch and turns the distances into a score (the largest patch distance, or
their mean) and into an anomaly map.

Density normalisation (``density_k`` > 0): each bank entry j gets a radius r_j, its distance to
its density_k-th nearest other entry, and a patch's distance to j counts as ||q - b_j|| / r_j
(the nearest entry is the one with the smallest such ratio). A patch as far from a sparse,
varied part of the normal data (bright stars, edges) as normal patches are from each other scores
about 1, while the same distance from a dense, uniform part (a flat background) scores high: the
idea of the local outlier factor. The radii are recomputed from the bank whenever it is set, so
they are never stored and cannot disagree with it.

The score is differentiable in x: the nearest bank entries are searched without gradients
(chunked torch.cdist, bounded memory), then the distances to them are recomputed with gradients.
That is the same function and the same (sub)gradient as a min over the whole bank.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AGGREGATES", "DENSITY_FLOOR", "PatchBankScore", "density_radii", "greedy_coreset", "patch_grid",
           "upsample_map"]

AGGREGATES = ("max", "mean")


def greedy_coreset(points: torch.Tensor, size: int, projection_dim: int = 128, seed: int = 0) -> torch.Tensor:
    """Indices of `size` points chosen by greedy k-center selection (each pick: the point farthest
    from those picked so far), on a seeded Gaussian random projection when that is smaller."""
    m = points.shape[0]
    if size >= m:
        return torch.arange(m)
    generator = torch.Generator().manual_seed(seed)
    z = points.detach().float()
    if 0 < projection_dim < z.shape[1]:
        # Johnson-Lindenstrauss: distances survive the projection closely enough to pick centres
        proj = torch.randn(z.shape[1], projection_dim, generator=generator).to(z.device) / math.sqrt(projection_dim)
        z = z @ proj
    start = int(torch.randint(m, (1,), generator=generator))
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = start
    nearest = (z - z[start]).pow(2).sum(dim=1)
    for i in range(1, size):
        pick = int(torch.argmax(nearest))
        chosen[i] = pick
        nearest = torch.minimum(nearest, (z - z[pick]).pow(2).sum(dim=1))
    return chosen


def patch_grid(maps: list[torch.Tensor], pool: int) -> torch.Tensor:
    """Feature maps of several stages -> patch features [N, H*W, D] on the finest map's grid.

    Each map is averaged over pool x pool neighbourhoods (PatchCore's local aggregation; 1 = none),
    the coarser ones upsampled bilinearly to the finest grid, and the channels concatenated.
    """
    if pool > 1:
        maps = [F.avg_pool2d(m, pool, stride=1, padding=pool // 2, count_include_pad=False) for m in maps]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps]
    return torch.cat(maps, dim=1).flatten(2).transpose(1, 2)


def upsample_map(distances: torch.Tensor, size: tuple[int, int], sigma_at_64: float) -> torch.Tensor:
    """Patch distances [N, 1, h, w] -> a map [N, 1, H, W]: bilinear upsampling, then a Gaussian blur whose
    width is sigma_at_64 pixels at 64 px and scales with the image (0 = no blur)."""
    out = F.interpolate(distances, size=tuple(size), mode="bilinear", align_corners=False)
    sigma = sigma_at_64 * min(size) / 64
    if sigma > 0:
        radius = max(1, int(round(2 * sigma)))
        t = torch.arange(-radius, radius + 1, device=out.device, dtype=out.dtype)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)
        kernel = kernel / kernel.sum()
        out = F.pad(out, (radius, radius, radius, radius), mode="replicate")
        out = F.conv2d(F.conv2d(out, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    return out


# radii below this share of the median are raised to it: duplicate patches (a flat, saturated
# background) would otherwise give a radius of 0 and an unbounded score
DENSITY_FLOOR = 0.1


@torch.no_grad()
def density_radii(bank: torch.Tensor, k: int, chunk_size: int = 4096) -> torch.Tensor:
    """[B] distance of each bank row to its k-th nearest other row (floored at DENSITY_FLOOR x median)."""
    if bank.shape[0] < 2:
        return torch.ones(bank.shape[0], device=bank.device, dtype=bank.dtype)
    kk = min(k, bank.shape[0] - 1)
    radii = []
    for start in range(0, bank.shape[0], chunk_size):
        d = torch.cdist(bank[start : start + chunk_size], bank)
        radii.append(d.topk(kk + 1, dim=1, largest=False).values[:, kk])  # column 0 is the row itself
    r = torch.cat(radii)
    floor = DENSITY_FLOOR * float(r.median())
    return r.clamp_min(floor if floor > 0 else 1e-6)


class PatchBankScore(nn.Module):
    """x [N,C,H,W] -> anomaly score [N]: per patch, the mean distance to its k nearest bank entries;
    per image, the largest of those (aggregate "max", as PatchCore) or their mean ("mean")."""

    mode = "patch"

    def __init__(self, k: int, chunk_size: int, bank_dim: int = 0, aggregate: str = "max", density_k: int = 0):
        super().__init__()
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
        self.k = k
        self.chunk_size = chunk_size
        self.aggregate = aggregate
        self.density_k = int(density_k)
        self.register_buffer("bank", torch.zeros(0, bank_dim))
        # per-entry divisor of distances (density normalisation); None = plain distances
        self.bank_scale: torch.Tensor | None = None
        self._scaled: tuple | None = None  # which bank (object, version, device) bank_scale was computed for

    def set_bank(self, bank: torch.Tensor) -> None:
        """Install a bank (and, with density normalisation, the radii that go with it)."""
        self.bank = bank.contiguous()
        self._scaled = None
        self._ensure_scale()

    def _ensure_scale(self) -> None:
        # load_state_dict copies a bank in place and .to() moves it: both bypass set_bank, so the
        # radii are recomputed whenever the bank is not the one they were computed for
        if self.density_k <= 0:
            self.bank_scale = None
            return
        key = (id(self.bank), self.bank._version, self.bank.device)
        if self._scaled != key or self.bank_scale is None:
            self.bank_scale = density_radii(self.bank, self.density_k, self.chunk_size)
            self._scaled = key

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    @torch.no_grad()
    def nearest(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """Indices [Q, k] of the k nearest bank rows, in blocks of chunk_size x chunk_size distances."""
        exporting = torch.compiler.is_exporting()
        if not exporting:  # an exported graph keeps the radii computed before export as constants
            self._ensure_scale()
        bank, c, scale = self.bank, self.chunk_size, self.bank_scale
        out = []
        # an exported graph must not depend on the number of queries: there, whole batches at once
        # (robustad.export's runtime feeds it a few images at a time), the bank still in blocks
        for q in ([queries] if exporting else queries.split(c)):
            best_d = torch.full((q.shape[0], 0), float("inf"), device=q.device)
            best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
            for bs in range(0, bank.shape[0], c):
                # cdist picks its algorithm by the number of rows; an exported graph cannot, so it is told
                d = torch.cdist(q, bank[bs : bs + c], compute_mode="use_mm_for_euclid_dist") if exporting \
                    else torch.cdist(q, bank[bs : bs + c])
                if scale is not None:
                    d = d / scale[bs : bs + c]
                kk = min(k, d.shape[1])
                d, i = d.topk(kk, dim=1, largest=False)
                best_d, order = torch.cat([best_d, d], 1).topk(min(k, best_d.shape[1] + kk), dim=1, largest=False)
                best_i = torch.cat([best_i, i + bs], 1).gather(1, order)
            out.append(best_i)
        return torch.cat(out)

    def patch_distances(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, D] patch features -> [N, P] mean distance to each patch's k nearest bank entries."""
        n, p, d = feats.shape
        q = feats.reshape(n * p, d)
        k = min(self.k, self.bank.shape[0])
        idx = self.nearest(q.detach(), k)  # [Q, k]
        # exact distances to the chosen neighbours, with gradients (to q only: the bank is fixed)
        return self.distances_to(q, idx).mean(dim=1).view(n, p)

    def distances_to(self, q: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """[Q, D] queries, [Q, K] bank indices -> [Q, K] distances (density-normalised when enabled)."""
        d = (q.unsqueeze(1) - self.bank[idx]).norm(dim=2)
        return d / self.bank_scale[idx] if self.bank_scale is not None else d

    def aggregate_patches(self, distances: torch.Tensor) -> torch.Tensor:
        return distances.amax(dim=1) if self.aggregate == "max" else distances.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregate_patches(self.patch_distances(self.features(x)))

    @torch.no_grad()
    def fill_bank(self, images: torch.Tensor, batch_size: int, coreset_fraction: float, bank_size: int | None,
                  max_candidates: int | None, projection_dim: int, seed: int) -> dict[str, int]:
        """Patch features of the training images, thinned by a coreset, become the bank."""
        device = self.bank.device
        feats = torch.cat([self.features(c.to(device)).flatten(0, 1) for c in images.split(batch_size)])
        if max_candidates is not None and feats.shape[0] > max_candidates:
            keep = torch.randperm(feats.shape[0], generator=torch.Generator().manual_seed(seed))[:max_candidates]
            feats = feats[keep.sort().values.to(feats.device)]
        size = max(1, int(round(coreset_fraction * feats.shape[0])))
        if bank_size is not None:
            size = min(size, bank_size)
        chosen = greedy_coreset(feats, size, projection_dim, seed)
        self.set_bank(feats[chosen.to(feats.device)])
        return {"num_candidates": int(feats.shape[0]), "num_bank": int(self.bank.shape[0]),
                "feature_dim": int(feats.shape[1])}
