"""The CSI-style anomaly score of a shift-contrastive network, as a differentiable module.

For each shift k: the largest cosine similarity between the projection of t_k(x) and the
training bank under t_k (the test feature's norm is kept, as in CSI), and H's logit for k.
Each term is divided by its mean on the training set; the score averages over k and flips the
sign so that higher means more anomalous. Everything is batched: the bank comparison is one
matrix product per shift.
"""

from __future__ import annotations

import torch
from torch import nn

from robustad.models.heads import ShiftContrastiveNet
from robustad.transforms.pseudo_anomaly import PseudoAnomalySet
from robustad.transforms._common import shared_randomness
from robustad.transforms.views import LightViews


class ShiftScore(nn.Module):
    """x [N,C,H,W] in [0,1] -> anomaly score [N]; deterministic in eval mode (seeded views/shifts)."""

    def __init__(
        self,
        net: ShiftContrastiveNet,
        pseudo_anomalies: PseudoAnomalySet,
        views: LightViews,
        num_views: int,
        seed: int,
        use_shift_term: bool = True,
    ):
        super().__init__()
        self.net = net
        self.pseudo_anomalies = pseudo_anomalies
        self.views = views
        self.num_views = num_views
        self.seed = seed
        self.use_shift_term = use_shift_term
        num_shifts = pseudo_anomalies.num_shifts
        dim = net.projection.net[-1].out_features
        self.register_buffer("bank", torch.zeros(num_shifts, 0, dim))  # [K, M, D], unit rows
        self.register_buffer("similarity_weight", torch.ones(num_shifts))
        self.register_buffer("shift_weight", torch.ones(num_shifts))

    # --- features -------------------------------------------------------------------------------
    def shifted_features(self, x: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Projection of t_shift(x) averaged over the seeded views, and H's logit for that shift."""
        projections, logits = 0.0, 0.0
        for view in range(max(1, self.num_views)):
            generator = torch.Generator(device=x.device).manual_seed(self.seed + 7919 * view + shift)
            with shared_randomness():
                xv = self.views(x, generator) if self.num_views > 0 else x
                shifted = self.pseudo_anomalies.apply(xv, shift, generator)
            out = self.net(shifted)
            projections = projections + out.projection
            logits = logits + out.shift_logits[:, shift]
        count = max(1, self.num_views)
        return projections / count, logits / count

    @torch.no_grad()
    def fit_bank(self, images: torch.Tensor, batch_size: int = 256) -> None:
        """Store the training bank and the per-shift weights (1 / training mean of each term)."""
        self.eval()
        device = self.bank.device
        banks, sim_weights, shift_weights = [], [], []
        for shift in range(self.pseudo_anomalies.num_shifts):
            feats, logits = [], []
            for start in range(0, images.shape[0], batch_size):
                z, logit = self.shifted_features(images[start : start + batch_size].to(device), shift)
                feats.append(z)
                logits.append(logit)
            z = torch.cat(feats)
            logit = torch.cat(logits)
            banks.append(torch.nn.functional.normalize(z, dim=1))
            sim_weights.append(1.0 / z.norm(dim=1).mean().clamp_min(1e-8))
            mean_logit = logit.mean()
            # A shift head that was never trained (no L_CLS) has logits around zero: its term is
            # noise, and 1/mean would blow it up, so it is left out.
            shift_weights.append(1.0 / mean_logit if mean_logit > 1e-3 else torch.zeros((), device=device))
        self.bank = torch.stack(banks)
        self.similarity_weight = torch.stack(sim_weights)
        self.shift_weight = torch.stack(shift_weights)
        if not self.use_shift_term:
            self.shift_weight.zero_()

    # --- the score --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normality = 0.0
        for shift in range(self.pseudo_anomalies.num_shifts):
            z, logit = self.shifted_features(x, shift)
            similarity = (z @ self.bank[shift].T).max(dim=1).values
            normality = normality + similarity * self.similarity_weight[shift] + logit * self.shift_weight[shift]
        return -normality / self.pseudo_anomalies.num_shifts
