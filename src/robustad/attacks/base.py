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
# Step-size schedules of the PGD loop in robustad.attacks.pgd ("constant" is torchattacks' PGD).
SCHEDULES = ("constant", "cosine", "step")


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
    schedule: str = "constant"  # constant | cosine | step (see robustad.attacks.pgd.step_sizes)

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
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"step-size schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
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


def attack_gain(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How much an image's score helps the attacker: the score of a normal image, minus that of an anomaly.

    Comparing gains per image is how "worst case over restarts/attacks" is decided everywhere.
    """
    labels = labels.to(scores.device)
    return torch.where(labels == 0, scores, -scores)


def keep_worst(best_x: torch.Tensor, best_gain: torch.Tensor, x: torch.Tensor, gain: torch.Tensor) -> None:
    """In place: where `gain` beats `best_gain`, take the candidate image and its gain."""
    better = gain > best_gain
    best_x[better] = x[better].to(best_x.dtype)
    best_gain[better] = gain[better]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def logit_gain(model: "ScoreAsLogits", x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """attack_gain on a ScoreAsLogits model's output (its second logit is the normalised score)."""
    return attack_gain(model(x)[:, 1], y)


def seeded_restarts(x: torch.Tensor, seed: int, restarts: int, single_run):
    """Yield single_run() `restarts` times under a private, seeded copy of the global RNG (attack
    libraries draw from it), so the caller's random stream is left as it was."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for _ in range(restarts):
            yield single_run().detach()


def batched_worst(model: "ScoreAsLogits", images: torch.Tensor, labels: torch.Tensor, batch_size: int, run) -> torch.Tensor:
    """run(x, y) -> candidate images, on device-sized batches; per image the candidate with the
    highest gain, the clean image included."""
    device = model_device(model)
    out = images.clone()
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        best_x, best_gain = x.clone(), logit_gain(model, x, y)
        for candidate in run(x, y):
            keep_worst(best_x, best_gain, candidate, logit_gain(model, candidate, y))
        out[start : start + batch_size] = best_x.to(out.device, out.dtype)
    return out


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the L-inf ball of radius eps around x and into [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def detector_device(detector) -> torch.device:
    try:
        return torch.device(detector.device)
    except (AttributeError, NotImplementedError, StopIteration):
        return torch.device("cpu")


class _DeviceAnchor(nn.Module):
    """An empty module with one zero-size parameter, so attack libraries can read the device."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)


def as_logits(detector) -> "ScoreAsLogits":
    """ScoreAsLogits for any detector with score(x); uses its scorer module when it has one."""
    module = getattr(detector, "scorer", None)
    if not isinstance(module, nn.Module) or next(module.parameters(), None) is None:
        module = _DeviceAnchor(detector_device(detector))
    return ScoreAsLogits(
        detector.score,
        module,
        center=float(getattr(detector, "score_center_", 0.0)),
        scale=float(getattr(detector, "score_scale_", 1.0)),
    )


class ScoreAsLogits(nn.Module):
    """Two logits [normal, anomalous] = [0, slog((score - center) / scale)] for logit-based attacks.

    Cross-entropy with the true label then grows exactly when the attack succeeds: a normal
    image's score rises, an anomaly's falls. Centering and scaling by held-out normal scores puts
    normal images near 0, and slog(z) = sign(z) * log(1 + |z|), which is strictly increasing,
    keeps far-off images out of softmax saturation: on the raw z, float32 cross-entropy has an
    input gradient of exactly zero once |z| passes ~17, and PGD or APGD would leave an anomaly
    scored that far out where it is. Sign-gradient attacks take the same steps on slog(z) as on z
    wherever z does not saturate, and every comparison of candidates keeps its order.
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
        z = (self.score(x) - self.center) / self.scale
        logit = torch.sign(z) * torch.log1p(z.abs())
        return torch.stack([torch.zeros_like(logit), logit], dim=1)
