"""What attacks see of a detector: a differentiable map from images in [0,1] to anomaly scores.

A target says which images are perturbed and which way: "normal" pushes normal images toward
higher scores, "anomaly" pushes anomalies toward lower scores, "both" does both at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from robustad.config import parse_eps
from robustad.errors import ConfigError

ScoreFunction = Callable[[torch.Tensor], torch.Tensor]
TARGETS = ("normal", "anomaly", "both")


@dataclass
class AttackConfig:
    name: str = "pgd"
    eps: Any = "8/255"
    steps: int = 50
    restarts: int = 1
    step_size: Any = None  # None -> 2.5 * eps / steps
    target: str = "both"
    random_start: bool = True
    seed: int = 0

    def validate(self) -> "AttackConfig":
        self.eps = parse_eps(self.eps, "attack eps")
        if self.step_size is not None:
            self.step_size = parse_eps(self.step_size, "attack step size")
        if self.target not in TARGETS:
            raise ConfigError(f"attack target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.steps < 1:
            raise ConfigError(f"attack steps must be >= 1, got {self.steps}")
        if self.restarts < 1:
            raise ConfigError(f"attack restarts must be >= 1, got {self.restarts}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attacked_mask(labels: torch.Tensor, target: str) -> torch.Tensor:
    """Which images the attack may perturb (labels: 1 = anomaly)."""
    if target == "normal":
        return labels == 0
    if target == "anomaly":
        return labels == 1
    return torch.ones_like(labels, dtype=torch.bool)


class ScoreAsLogits(nn.Module):
    """Two logits [normal, anomalous] = [0, (score - center) / scale] for logit-based attacks.

    Cross-entropy with the true label then grows exactly when the attack succeeds: a normal
    image's score rises, an anomaly's falls. Centering and scaling by held-out normal scores
    keeps the logits in a range where the softmax does not saturate.
    """

    def __init__(self, score: ScoreFunction, module: nn.Module, center: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.score = score
        self.module = module  # registered so that attack libraries find the device and eval mode
        self.center = center
        self.scale = scale
        # torchattacks restores the wrapper's train/eval mode after each call, recursively; a
        # wrapper left in its default train mode would switch the detector's BatchNorm to
        # batch statistics after the first attack.
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = (self.score(x) - self.center) / self.scale
        return torch.stack([torch.zeros_like(logit), logit], dim=1)
