"""COBRA-patch's score: local features of the robust trunk against a bank of training patches."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustad.methods.patch_bank import PatchBankScore, patch_grid, upsample_map
from robustad.models.efficientnet_lite import EfficientNetLiteTrunk


class PatchTrunk(torch.nn.Module):
    """Images [N,C,H,W] in [0,1] -> patch feature map [N, D, h, w] (taps pooled, upsampled, stacked)."""

    def __init__(self, trunk: EfficientNetLiteTrunk, input_size: int | None, patch_pool: int):
        super().__init__()
        self.trunk = trunk
        self.input_size = input_size
        self.patch_pool = patch_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        patches = patch_grid(self.trunk(x), self.patch_pool)  # [N, h*w, D]
        h, w = self.grid(x.shape[-2:] if self.input_size is None else (self.input_size, self.input_size))
        return patches.transpose(1, 2).reshape(x.shape[0], -1, h, w)

    def grid(self, size) -> tuple[int, int]:
        """The finest tap's grid for an input of `size` (stride-2 SAME convolutions round up)."""
        h, w = size
        stride = min(self.trunk.strides)
        return -(-h // stride), -(-w // stride)


class PatchScore(PatchBankScore):
    """x -> anomaly score [N] (PatchBankScore) and anomaly maps [N, 1, H, W] at input resolution."""

    def __init__(self, net: PatchTrunk, k: int, chunk_size: int, aggregate: str, map_sigma: float, bank_dim: int = 0,
                 density_k: int = 0):
        super().__init__(k, chunk_size, bank_dim, aggregate, density_k=density_k)
        self.net = net
        self.map_sigma = map_sigma

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel anomaly [N, 1, H, W]: patch distances upsampled to the image and smoothed."""
        fmap = self.net(x)
        n, _, h, w = fmap.shape
        dist = self.patch_distances(fmap.flatten(2).transpose(1, 2)).view(n, 1, h, w)
        return upsample_map(dist, x.shape[-2:], self.map_sigma)
