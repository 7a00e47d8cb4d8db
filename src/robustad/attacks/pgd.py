"""PGD-k with random restarts against an anomaly score, through torchattacks' PGD."""

from __future__ import annotations

import torch
import torchattacks

from robustad.attacks.base import AttackConfig, ScoreAsLogits, attacked_mask


def attack_pgd(
    model: ScoreAsLogits, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig, batch_size: int = 128
) -> torch.Tensor:
    """Perturbed copies of images (L-inf, eps), worst case over restarts for each image.

    Only images selected by config.target move; the rest are returned unchanged. "Worst" means
    the highest score for a normal image and the lowest for an anomaly.
    """
    config.validate()
    step_size = config.step_size if config.step_size is not None else 2.5 * config.eps / config.steps
    attack = torchattacks.PGD(model, eps=config.eps, alpha=step_size, steps=config.steps, random_start=config.random_start)
    device = next(model.parameters()).device
    mask = attacked_mask(labels, config.target)
    result = images.clone()
    torch.manual_seed(config.seed)  # torchattacks draws its random start from the global RNG
    for start in range(0, images.shape[0], batch_size):
        idx = torch.arange(start, min(start + batch_size, images.shape[0]))
        idx = idx[mask[idx]]
        if idx.numel() == 0:
            continue
        x, y = images[idx].to(device), labels[idx].to(device)
        best_x, best_gain = x.clone(), _gain(model, x, y)
        for _ in range(config.restarts):
            candidate = attack(x, y)
            gain = _gain(model, candidate, y)
            better = gain > best_gain
            best_x[better], best_gain[better] = candidate[better], gain[better]
        result[idx] = best_x.to(result.device)
    return result


@torch.no_grad()
def _gain(model: ScoreAsLogits, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How far the attack got: the score for normal images, minus the score for anomalies."""
    logit = model(x)[:, 1]
    return torch.where(y == 0, logit, -logit)
