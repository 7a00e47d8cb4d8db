"""APGD (white-box) and Square (black-box) from torchattacks, aimed at a ranking, not a label.

How torchattacks' versions behave on the two logits [0, (score - center) / scale]:

- APGD: the 'dlr' loss needs at least three classes (it reads the third-largest logit), so
  only 'ce' applies. Its forward() keeps a perturbation only for images whose label flips
  (the score crosses `center`) and returns the clean image otherwise; for an AUROC every push
  counts, so we call ``perturb(best_loss=True)``, which returns each image's highest-loss point.
  That path never seeds the RNG (its `seed` is used only in the other path), so we seed the
  global RNG ourselves, inside ``fork_rng`` so the caller's stream is left as it was.
- Square: with 2 classes its 'margin' loss is +-(logit), i.e. the gain in score units, which is
  what we want, but it stops working on an image as soon as its label flips, and its forward()
  again returns the clean image for the others. The subclass below reports every image as not
  yet fooled, so all queries go into pushing the score; ``attack_single_run`` returns the best
  point found per image. `seed=None` would seed from the clock, so a seed is always passed.
- ``verbose`` only prints progress; it stays off.
"""

from __future__ import annotations

import torch
import torchattacks

from robustad.attacks.base import (ScoreAsLogits, attack_gain, batched_worst, keep_worst, logit_gain, model_device,
                                   seeded_restarts)
from robustad.attacks.pgd import perturb_targets


class _RankingSquare(torchattacks.Square):
    """Square attack that never stops early: the loss is minus the gain, no image counts as done."""

    def margin_and_loss(self, x, y):
        logit = self.get_logits(x)[:, 1]
        gain = attack_gain(logit, y)
        return torch.ones_like(gain), -gain


def attack_apgd(
    model: ScoreAsLogits,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    target: str = "both",
    *,
    steps: int = 100,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """APGD-CE (Croce & Hein 2020) on the score; worst case over restarts per image."""
    attack = torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed,
                               loss="ce", verbose=False)

    def run(x, y):
        return seeded_restarts(x, seed, restarts, lambda: attack.perturb(x, y, best_loss=True)[1])

    return perturb_targets(images, labels, target, lambda x, y: batched_worst(model, x, y, batch_size, run))


def attack_square(
    model: ScoreAsLogits,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    target: str = "both",
    *,
    queries: int = 1000,
    restarts: int = 1,
    p_init: float = 0.8,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Square attack (Andriushchenko et al. 2020): random search using scores only, no gradients."""
    attack = _RankingSquare(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, p_init=p_init,
                            loss="margin", seed=seed, verbose=False)

    def run(x, y):
        attack.init_hyperparam(x)
        return seeded_restarts(x, seed, restarts, lambda: attack.attack_single_run(x, y)[1])

    return perturb_targets(images, labels, target, lambda x, y: batched_worst(model, x, y, batch_size, run))


def attack_autoattack(
    model: ScoreAsLogits,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    target: str = "both",
    *,
    apgd_steps: int = 100,
    apgd_restarts: int = 1,
    square_queries: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """AutoAttack-style ensemble: APGD-CE and Square, worst case per image."""
    a = attack_apgd(model, images, labels, eps, target, steps=apgd_steps, restarts=apgd_restarts, seed=seed,
                    batch_size=batch_size)
    b = attack_square(model, images, labels, eps, target, queries=square_queries, seed=seed, batch_size=batch_size)
    return worst_of(model, images, labels, [a, b])


@torch.no_grad()
def worst_of(model: ScoreAsLogits, images, labels, candidates: list[torch.Tensor]) -> torch.Tensor:
    """Per image, the candidate (or the clean image) with the highest gain on the model's score."""
    device = model_device(model)
    y = labels.to(device)
    best_x = images.clone().to(device)
    best_gain = logit_gain(model, best_x, y)
    for c in candidates:
        c = c.to(device)
        keep_worst(best_x, best_gain, c, logit_gain(model, c, y))
    return best_x.to(images.device)
