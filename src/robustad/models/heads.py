"""Heads on top of the encoder: projection G (contrastive space) and shift classifier H."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from robustad.models.resnet import ResNet18


class ProjectionHead(nn.Module):
    """G: two-layer MLP to the contrastive space (cosine similarities are taken there)."""

    def __init__(self, in_dim: int, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


@dataclass
class EncoderOutput:
    features: torch.Tensor  # F(x), [N, feature_dim]
    projection: torch.Tensor  # G(F(x)), [N, projection_dim]
    shift_logits: torch.Tensor  # H(F(x)), [N, K]


class ShiftContrastiveNet(nn.Module):
    """Encoder F with projection head G and transformation head H (K-way linear)."""

    def __init__(
        self,
        in_channels: int,
        num_shifts: int,
        width: int = 64,
        stem: str = "cifar",
        projection_dim: int = 128,
    ):
        super().__init__()
        self.encoder = ResNet18(in_channels=in_channels, width=width, stem=stem)
        self.projection = ProjectionHead(self.encoder.feature_dim, projection_dim)
        self.shift_head = nn.Linear(self.encoder.feature_dim, num_shifts)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        h = self.encoder(x)
        return EncoderOutput(h, self.projection(h), self.shift_head(h))

    def folded(self) -> "ShiftContrastiveNet":
        """A copy for inference, its encoder's BatchNorms folded (ResNet18.folded); the two heads
        (no BatchNorm) are shared with this network, not copied."""
        out = copy.copy(self)
        out._modules = {**self._modules, "encoder": self.encoder.folded()}
        out.training = False
        return out
