"""The CSI-style anomaly score of a shift-contrastive network, as a differentiable module.

For each shift k (all K, or the subset score.shifts names): the largest cosine similarity between the projection of t_k(x) and the
training bank under t_k (the test feature's norm is kept, as in CSI), and H's logit for k.
Each term is divided by its mean on the training set; the score averages over k and flips the
sign so that higher means more anomalous. Everything is batched: the bank comparison is one
matrix product per shift.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from robustad import distributed
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
        shift_ids: list[int] | None = None,
    ):
        super().__init__()
        self.net = net
        self.pseudo_anomalies = pseudo_anomalies
        self.views = views
        self.num_views = num_views
        self.seed = seed
        self.use_shift_term = use_shift_term
        self.shift_ids = list(range(pseudo_anomalies.num_shifts)) if shift_ids is None else list(shift_ids)
        num_shifts = len(self.shift_ids)
        dim = net.projection.net[-1].out_features
        self.register_buffer("bank", torch.zeros(num_shifts, 0, dim))  # [S, M, D] for the S scored shifts, unit rows
        self.register_buffer("similarity_weight", torch.ones(num_shifts))
        self.register_buffer("shift_weight", torch.ones(num_shifts))

    # --- features -------------------------------------------------------------------------------
    def network(self) -> ShiftContrastiveNet:
        """The network the score runs. In eval mode, a copy with the encoder's BatchNorms folded into
        its convolutions (the same scores up to float rounding, about 12 % less CPU time), rebuilt
        whenever a weight or statistic of the trained network changes (training, loading, moving)."""
        if self.net.training:
            return self.net
        try:
            key = tuple((t.data_ptr(), t._version) for t in itertools.chain(self.net.parameters(), self.net.buffers()))
        except RuntimeError:  # traced tensors (ONNX export) have no storage to copy: the graph keeps BatchNorm
            return self.net
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] != key:
            cached = (key, self.net.folded())
            self.__dict__["_folded"] = cached  # a plain attribute: not a submodule, so never saved
        return cached[1]

    def shifted_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For every scored shift k: projections of t_k(x) [S,N,D] and H's logit for k [S,N], view-averaged.

        All S scored shifts go through the network as one batch.
        """
        ids, n = self.shift_ids, x.shape[0]
        rows = torch.arange(len(ids), device=x.device)
        columns = torch.tensor(ids, device=x.device)
        projections, logits = 0.0, 0.0
        for view in range(max(1, self.num_views)):
            generator = torch.Generator(device=x.device).manual_seed(self.seed + 7919 * view)
            with shared_randomness():
                xv = self.views(x, generator) if self.num_views > 0 else x
                shifted = torch.cat([self.pseudo_anomalies.apply(xv, k, generator) for k in ids])
            out = self.network()(shifted)
            projections = projections + out.projection.view(len(ids), n, -1)
            # logit of shift k for the copy that was shifted by k: [S, N]
            logits = logits + out.shift_logits.view(len(ids), n, -1)[rows, :, columns]
        count = max(1, self.num_views)
        return projections / count, logits / count

    @torch.no_grad()
    def fit_bank(self, images: torch.Tensor, batch_size: int = 256) -> None:
        """Store the training bank and the per-shift weights (1 / training mean of each term)."""
        self.eval()
        device = self.bank.device
        # under torchrun each rank computes its share of the batches and all ranks get the whole bank
        parts = distributed.map_batches(lambda b: self.shifted_features(b.to(device)), images, batch_size, dims=(1, 1))
        z = torch.cat([p[0] for p in parts], dim=1)  # [S, M, D]
        logit = torch.cat([p[1] for p in parts], dim=1)  # [S, M]
        self.bank = torch.nn.functional.normalize(z, dim=2)
        self.similarity_weight = 1.0 / z.norm(dim=2).mean(dim=1).clamp_min(1e-8)
        mean_logit = logit.mean(dim=1)
        # A shift head that was never trained (no L_CLS) has logits around zero: its term is
        # noise, and 1/mean would blow it up, so it is left out.
        usable = (mean_logit > 1e-3) & torch.tensor(self.use_shift_term, device=device)
        self.shift_weight = torch.where(usable, 1.0 / mean_logit.clamp_min(1e-3), torch.zeros_like(mean_logit))

    # --- the score --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, logit = self.shifted_features(x)
        similarity = torch.bmm(z, self.bank.transpose(1, 2)).amax(dim=2)  # [S, N]: best match in the bank
        normality = similarity * self.similarity_weight[:, None] + logit * self.shift_weight[:, None]
        return -normality.mean(dim=0)
