"""COBRA-patch's training step: COBRA's pairs, drawn between patches instead of whole images.

COBRA pulls an image and its adversarial copy together (positive pairs) and pushes an image away
from its own pseudo-anomaly (opposite pairs), without the normal-normal negatives that a plain
contrastive loss would push apart (the "spurious negatives"). Here the pairs are local features at
the same place of the image, the pseudo-anomaly is a synthetic local defect with its mask, and
only the patches the defect covers form opposite pairs:

- positive: || f(x + d) - f(x) ||^2 over every patch, d a PGD adversary that maximises it;
- opposite: relu(margin - || f(y + d') - f(x) ||^2) over the defect's patches, y the defective
  image and d' a PGD adversary that pulls those patches toward the clean ones;
- anchor: || f(x) - f0(x) ||^2 to the pretrained trunk f0, which keeps the features informative
  (COBRA's contrastive denominator does that job for whole images).

Distances are divided by the mean squared norm of f0's patch features, so the weights and the
margin mean the same for any backbone. The trunk runs with its BatchNorm statistics frozen
(evaluation mode) throughout, as pretrained networks are fine-tuned on small batches.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustad.methods.adversarial import pgd_ascend_loss
from robustad.methods.cobra_patch.config import PatchAdversarialConfig, PatchLossConfig
from robustad.methods.cobra_patch.score import PatchTrunk
from robustad.transforms.defects import SyntheticDefects


class PatchObjective:
    """What robustad.methods.training.train needs: .net, step(x, generator) and set_progress(t)."""

    def __init__(self, net: PatchTrunk, reference: PatchTrunk, defects: SyntheticDefects, loss: PatchLossConfig,
                 adversarial: PatchAdversarialConfig, flips: bool, scale: float):
        self.net = net
        self.reference = reference
        self.defects = defects
        self.loss_config = loss
        self.adv = adversarial
        self.flips = flips
        self.scale = scale
        self.progress = 0.0

    def set_progress(self, fraction: float) -> None:
        """Where training is (0 at the first step, 1 at the end): the adversaries' eps ramps with it."""
        self.progress = fraction

    def eps(self) -> float:
        if not self.adv.enabled:
            return 0.0
        ramp = self.adv.ramp
        return self.adv.eps if ramp <= 0 else self.adv.eps * min(1.0, self.progress / ramp)

    def _flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.flips:
            return x
        coins = torch.rand(2, generator=generator, device=generator.device if generator is not None else x.device)
        if coins[0] < 0.5:
            x = x.flip(-1)
        if coins[1] < 0.5:
            x = x.flip(-2)
        return x

    def _pgd(self, loss_fn, x: torch.Tensor, eps: float, generator) -> torch.Tensor:
        return pgd_ascend_loss(loss_fn, x, eps, self.adv.steps, self.adv.step_size, True, generator)

    def step(self, x: torch.Tensor, generator: torch.Generator | None):
        self.net.eval()  # frozen BatchNorm statistics, also while crafting adversaries
        cfg, eps = self.loss_config, self.eps()
        x = self._flip(x, generator)
        features = self.net(x)
        clean = features.detach()
        with torch.no_grad():
            anchor_target = self.reference(x) if cfg.anchor > 0 else None
            defective, mask = self.defects(x, generator)
            mask = F.adaptive_max_pool2d(mask, features.shape[-2:])  # a patch is part of a defect if any pixel is
        total = features.new_zeros(())
        metrics = {}
        if anchor_target is not None:
            anchor = (features - anchor_target).pow(2).sum(1).mean() / self.scale
            total = total + cfg.anchor * anchor
            metrics["anchor"] = float(anchor.detach())
        if cfg.positive > 0:
            moved = x
            if eps > 0:
                moved = self._pgd(lambda z: (self.net(z) - clean).pow(2).sum(1).mean(), x, eps, generator)
            positive = (self.net(moved) - features).pow(2).sum(1).mean() / self.scale
            total = total + cfg.positive * positive
            metrics["positive"] = float(positive.detach())
        if cfg.opposite > 0:
            covered = mask.sum().clamp_min(1.0)

            def closeness(z):  # the attacker pulls the defect's patches toward the clean image's
                return -((self.net(z) - clean).pow(2).sum(1, keepdim=True) * mask).sum() / covered

            pulled = self._pgd(closeness, defective, eps, generator) if eps > 0 else defective
            distance = (self.net(pulled) - clean).pow(2).sum(1, keepdim=True) / self.scale
            opposite = (F.relu(cfg.margin - distance) * mask).sum() / covered
            total = total + cfg.opposite * opposite
            metrics["opposite"] = float(opposite.detach())
        metrics["loss"] = float(total.detach())
        metrics["eps"] = eps
        return total, metrics
