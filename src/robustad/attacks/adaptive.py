"""Attacks adapted to COBRA's score (robustad.methods.cobra.score.ShiftScore).

The score is  -mean_k [ w_k * max_m <z_k(x), b_km>  +  v_k * logit_k(x) ]  over shifts k, with a
feature bank b, per-shift weights w (similarity) and v (shift head). Plain PGD on it can be
weak for reasons that have nothing to do with robustness:

- the max over the bank passes gradient to one bank entry only, and that entry can change
  from step to step;  -> "lse:T": replace it by T * logsumexp(. / T) while attacking;
- the two terms can pull against each other;  -> "similarity" / "shift": attack one term alone;
- with random views or random pseudo-anomalies (score.views > 0, CutPaste, ...) the score's
  fixed seed is one draw of many;  -> "eot": average over fresh draws (expectation over
  transformation). With views = 0 and rotations, as in the cpu-small preset, no draw is random
  and this variant is skipped (it would equal plain PGD).

Whatever the attack optimises, each candidate is judged on the real score, and the result keeps
the worst case per image over all variants.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from robustad.attacks.base import attack_gain, detector_device, keep_worst
from robustad.attacks.pgd import perturb_targets, pgd_maximize
from robustad.errors import ConfigError

VARIANTS = ("lse", "similarity", "shift", "eot")


def cobra_surrogate(scorer, x: torch.Tensor, bank_temperature: float | None = None, terms: str = "both") -> torch.Tensor:
    """ShiftScore.forward rebuilt from its parts, with a smooth bank maximum and a choice of terms.

    bank_temperature=None and terms="both" give exactly scorer(x) (a test checks this).
    The temperature is in units of the weighted similarity, which is about a cosine (w_k is
    1 / the mean feature norm of the training images), so 0.01-0.1 is a useful range.
    """
    if terms not in ("both", "similarity", "shift"):
        raise ConfigError(f"terms must be both, similarity or shift, got {terms!r}")
    z, logit = scorer.shifted_features(x)
    normality = 0.0
    if terms in ("both", "similarity"):
        sims = torch.bmm(z, scorer.bank.transpose(1, 2))  # [K, N, M]
        if bank_temperature is None:
            best = sims.amax(dim=2) * scorer.similarity_weight[:, None]
        else:
            weighted = sims * scorer.similarity_weight[:, None, None]
            # minus T*log(M): keeps the smooth max close to the real one in value (not needed for gradients)
            best = bank_temperature * (torch.logsumexp(weighted / bank_temperature, dim=2) - math.log(sims.shape[2]))
        normality = normality + best
    if terms in ("both", "shift"):
        normality = normality + logit * scorer.shift_weight[:, None]
    return -normality.mean(dim=0)


@contextmanager
def reseeded(scorer, seed: int):
    """Temporarily draw the score's views and pseudo-anomalies from another seed."""
    old = scorer.seed
    scorer.seed = seed
    try:
        yield scorer
    finally:
        scorer.seed = old


@torch.no_grad()
def score_depends_on_seed(detector, images: torch.Tensor, probes: int = 2) -> bool:
    """Does the score change when its views/pseudo-anomalies are drawn from other seeds?"""
    scorer = detector.scorer
    x = detector.prepare(images[:8])
    reference = scorer(x)
    for i in range(probes):
        with reseeded(scorer, scorer.seed + 1_000_003 * (i + 1)):
            if not torch.allclose(scorer(x), reference, rtol=1e-5, atol=1e-6):
                return True
    return False


def is_shift_score_detector(detector) -> bool:
    scorer = getattr(detector, "scorer", None)
    return all(hasattr(scorer, a) for a in ("shifted_features", "bank", "similarity_weight", "shift_weight", "seed"))


@dataclass
class AdaptiveResult:
    images: torch.Tensor  # worst case per image over the variants that ran
    variants: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> perturbed images
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it did not run


def parse_variant(name: str) -> tuple[str, float | None]:
    kind, _, arg = name.partition(":")
    if kind not in VARIANTS:
        raise ConfigError(f"unknown adaptive variant {name!r}; use lse:T, similarity, shift or eot")
    if kind == "lse":
        try:
            t = float(arg)
        except ValueError:
            raise ConfigError(f"lse needs a temperature, e.g. lse:0.02; got {name!r}") from None
        if t <= 0:
            raise ConfigError(f"lse temperature must be > 0, got {t}")
        return kind, t
    return kind, None


def attack_adaptive(
    detector,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    target: str = "both",
    *,
    variants: tuple[str, ...] = ("lse:0.02", "similarity", "shift", "eot"),
    steps: int = 50,
    restarts: int = 1,
    schedule: str = "cosine",
    step_size: float | None = None,
    eot_samples: int = 4,
    seed: int = 0,
    batch_size: int = 256,
) -> AdaptiveResult:
    """Run each variant with PGD on its surrogate; keep per image the one worst on the real score."""
    if not is_shift_score_detector(detector):
        return AdaptiveResult(images.clone(), skipped={v: "the detector has no ShiftScore scorer" for v in variants})
    scorer = detector.scorer
    if scorer.training:  # the score is defined with running BatchNorm statistics
        scorer.eval()
    parsed = [(v, *parse_variant(v)) for v in variants]

    def real_gain(x, y):
        return attack_gain(detector.score(x), y)

    result = AdaptiveResult(images.clone())
    for name, kind, temperature in parsed:
        if kind == "shift" and not bool((scorer.shift_weight != 0).any()):
            result.skipped[name] = "the score does not use the shift head (shift weights are 0)"
            continue
        if kind == "eot" and not score_depends_on_seed(detector, images):
            result.skipped[name] = "the score draws nothing at random (views = 0, fixed pseudo-anomalies): EOT = PGD"
            continue
        gain = _surrogate_gain(detector, kind, temperature, eot_samples, seed)
        result.variants[name] = perturb_targets(
            images, labels, target,
            lambda x, y, gain=gain: pgd_maximize(
                gain, x, y, eps, steps, restarts=restarts, schedule=schedule, step_size=step_size, seed=seed,
                judge_fn=real_gain, batch_size=batch_size, device=detector_device(detector)),
        )
    if result.variants:
        with torch.no_grad():
            best_gain = real_gain(images, labels).cpu()
            best = images.clone()
            for x_adv in result.variants.values():
                keep_worst(best, best_gain, x_adv, real_gain(x_adv, labels).cpu())
        result.images = best
    return result


def _surrogate_gain(detector, kind: str, temperature: float | None, eot_samples: int, seed: int):
    scorer = detector.scorer
    if kind == "eot":
        # fresh seeds for every step and sample, never the score's own seed
        counter = itertools.count()
        base = scorer.seed + 7_777_777 + 1_000 * seed

        def gain(x, y):
            x = detector.prepare(x)
            step = next(counter)
            total = 0.0
            for j in range(eot_samples):
                with reseeded(scorer, base + step * eot_samples + j + 1):
                    total = total + scorer(x)
            return attack_gain(total / eot_samples, y)

        return gain
    terms = kind if kind in ("similarity", "shift") else "both"

    def gain(x, y):
        return attack_gain(cobra_surrogate(scorer, detector.prepare(x), temperature, terms), y)

    return gain
