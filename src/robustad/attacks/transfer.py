"""Transfer attacks: craft on a surrogate detector, evaluate on the target.

A gradient-masked target gives useless gradients, but perturbations crafted on a surrogate with
honest gradients (another seed, or the non-robust baseline) still work on it if the two share
what they learned. The perturbations stay within the same eps ball of the clean images, so they
are valid attacks on the target whatever the surrogate is.
"""

from __future__ import annotations

import torch

from robustad.attacks.pgd import attack_score


def attack_transfer(
    surrogate,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    target: str = "both",
    *,
    steps: int = 100,
    restarts: int = 1,
    schedule: str = "cosine",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """PGD on the surrogate's score; evaluate the returned images on any other detector."""
    return attack_score(surrogate, images, labels, eps, target, steps=steps, restarts=restarts, schedule=schedule,
                        seed=seed, batch_size=batch_size)
