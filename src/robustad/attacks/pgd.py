"""PGD-k with random restarts against an anomaly score.

Two engines:

- ``attack_pgd`` with ``schedule="constant"`` runs torchattacks' PGD on the two-logit wrapper
  (cross-entropy loss, last iterate), as before.
- every other schedule, and every attack that needs its own objective (adaptive, transfer), runs
  ``pgd_maximize`` below: torchattacks' PGD has a single fixed step size and no schedule option,
  so step-size decay needs a loop of our own. It ascends the gain directly (the score of a normal
  image, minus the score of an anomaly: linear, so it never saturates like cross-entropy) and
  keeps the best iterate of every run, judged on the real score.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torchattacks

from robustad.attacks.base import (
    SCHEDULES,
    AttackConfig,
    ScoreAsLogits,
    attack_gain,
    attacked_mask,
    detector_device,
    keep_worst,
    project,
)
from robustad.errors import ConfigError

# gain(x_adv, labels) -> [n]; higher = better for the attacker
GainFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def attack_pgd(
    model: ScoreAsLogits, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig, batch_size: int = 128
) -> torch.Tensor:
    """Perturbed copies of images (L-inf, eps), worst case over restarts for each image.

    Only images selected by config.target move; the rest are returned unchanged. "Worst" means
    the highest score for a normal image and the lowest for an anomaly.
    """
    config.validate()
    if config.schedule != "constant":
        return _attack_pgd_scheduled(model, images, labels, config, batch_size)
    step_size = config.step_size if config.step_size is not None else 2.5 * config.eps / config.steps
    attack = torchattacks.PGD(model, eps=config.eps, alpha=step_size, steps=config.steps, random_start=config.random_start)
    device = next(model.parameters()).device
    mask = attacked_mask(labels, config.target)
    result = images.clone()
    # torchattacks draws its random start from the global RNG: seed a private copy of it
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
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


def _attack_pgd_scheduled(model, images, labels, config: AttackConfig, batch_size: int) -> torch.Tensor:
    def gain(x, y):
        return attack_gain(model(x)[:, 1], y)

    device = next(model.parameters()).device
    return perturb_targets(
        images, labels, config.target,
        lambda x, y: pgd_maximize(
            gain, x, y, config.eps, config.steps, restarts=config.restarts, schedule=config.schedule,
            step_size=config.step_size, seed=config.seed, random_start=config.random_start,
            batch_size=batch_size, device=device,
        ),
    )


def perturb_targets(images: torch.Tensor, labels: torch.Tensor, target: str, attack) -> torch.Tensor:
    """Run attack(x, y) -> x_adv on the images the target selects; leave the others as they are."""
    mask = attacked_mask(labels.cpu(), target)
    result = images.clone()
    if mask.any():
        result[mask] = attack(images[mask], labels[mask]).to(result.device, result.dtype)
    return result


def step_sizes(schedule: str, steps: int, eps: float, step_size: float | None = None) -> list[float]:
    """The step size of each of `steps` iterations.

    constant: step_size, default 2.5 * eps / steps (enough travel to cross the ball, as in Madry et al.).
    cosine:   from a0 down to ~0 along half a cosine; step: a0, then a0/4 after half the steps and
              a0/16 after three quarters. a0 defaults to max(eps/4, 4 * eps / steps): large early
              steps to explore, small late ones to settle.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"step-size schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "constant":
        a = step_size if step_size is not None else 2.5 * eps / steps
        return [a] * steps
    a0 = step_size if step_size is not None else max(eps / 4, 4 * eps / steps)
    if schedule == "cosine":
        return [a0 * 0.5 * (1 + math.cos(math.pi * t / steps)) for t in range(steps)]
    return [a0 * (1.0 if t < steps // 2 else 0.25 if t < (3 * steps) // 4 else 0.0625) for t in range(steps)]


def pgd_maximize(
    gain_fn: GainFunction,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    steps: int,
    *,
    restarts: int = 1,
    schedule: str = "cosine",
    step_size: float | None = None,
    seed: int = 0,
    random_start: bool = True,
    judge_fn: GainFunction | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """L-inf PGD ascent on gain_fn, worst case per image over restarts (and iterates).

    judge_fn is what decides which candidate is kept (the real score's gain); None means gain_fn
    is itself the real gain, and then every iterate is a candidate at no extra cost. With a
    separate judge (a surrogate objective), the last iterate of each restart is judged. The clean
    image is always a candidate too, so the result never helps the defender.
    """
    if eps < 0 or steps < 1 or restarts < 1:
        raise ConfigError(f"PGD needs eps >= 0, steps >= 1, restarts >= 1; got {eps}, {steps}, {restarts}")
    device = torch.device(device) if device is not None else images.device
    alphas = step_sizes(schedule, steps, eps, step_size)
    generator = torch.Generator().manual_seed(seed)  # own generator: the caller's RNG stays untouched
    judge = judge_fn or gain_fn
    out = images.clone()
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        with torch.no_grad():
            best_gain = judge(x, y).detach()
        best_x = x.clone()
        for _ in range(restarts):
            if random_start and eps > 0:
                noise = torch.rand(x.shape, generator=generator).to(device) * 2 - 1
                x_adv = (x + eps * noise).clamp(0, 1)
            else:
                x_adv = x.clone()
            for alpha in alphas:
                x_adv.requires_grad_(True)
                with torch.enable_grad():
                    gain = gain_fn(x_adv, y)
                    grad = _input_grad(gain, x_adv)
                x_adv = x_adv.detach()
                if judge_fn is None:
                    keep_worst(best_x, best_gain, x_adv, gain.detach())
                x_adv = project(x_adv + alpha * grad.sign(), x, eps)
            with torch.no_grad():
                keep_worst(best_x, best_gain, x_adv, judge(x_adv, y).detach())
        out[start : start + batch_size] = best_x.to(out.device, out.dtype)
    return out


def _input_grad(gain: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d gain / d x; zeros where the score is not differentiable at all (a masked detector)."""
    if not gain.requires_grad:
        return torch.zeros_like(x)
    grad = torch.autograd.grad(gain.sum(), x, allow_unused=True)[0]
    return torch.zeros_like(x) if grad is None else grad


def attack_score(
    detector,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    target: str = "both",
    *,
    steps: int = 100,
    restarts: int = 1,
    schedule: str = "cosine",
    step_size: float | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """PGD (own loop) on a detector's score directly; images outside the target are not moved."""

    def gain(x, y):
        return attack_gain(detector.score(x), y)

    return perturb_targets(
        images, labels, target,
        lambda x, y: pgd_maximize(gain, x, y, eps, steps, restarts=restarts, schedule=schedule, step_size=step_size,
                                  seed=seed, batch_size=batch_size, device=detector_device(detector)),
    )
