"""SPSA (Uesato et al. 2018, "Adversarial Risk and the Dangers of Evaluating Against Weak Attacks"):
a gradient-free attack that estimates the score's gradient from pairs of random +-delta probes and
follows it with Adam inside the L-inf ball. It reads only scores, so a score whose gradients are
masked or misleading (the failure PGD cannot see) still falls to it; a robust figure that SPSA
lowers well below PGD's is a sign of gradient masking.

torchattacks' SPSA does the estimate and the steps; here it is aimed at the score through the two
logits [0, normalised score], seeded, batched, and kept to the target's images. Each step costs
2 x samples score evaluations per image, so the suites that run it are the long ones.
"""

from __future__ import annotations

from typing import Any

import torchattacks

from robustad.attacks.attack import Attack, require_at_least_one
from robustad.attacks.base import as_logits, batched_worst, seeded_restarts
from robustad.attacks.pgd import perturb_targets
from robustad.errors import ConfigError

class _InRangeSPSA(torchattacks.SPSA):
    """torchattacks' SPSA probes x +- delta outside [0, 1] at the image's edges, which a detector
    refuses; the probes are clipped back into the image range (a one-sided estimate there)."""

    def get_logits(self, inputs, labels=None, *args, **kwargs):
        return super().get_logits(inputs.clamp(0.0, 1.0), labels, *args, **kwargs)


# images scored at once while probing: (images in a batch) x (probes per pass) stays near this
PROBE_IMAGES = 512


class SPSA(Attack, kind="spsa"):
    """SPSA on the score: `steps` Adam steps of size `lr` on a gradient estimated from `samples`
    random sign probes of size `delta`; worst case over `restarts` per image. A suite's
    AttackSpec sets steps and restarts; samples, delta and lr keep these defaults there."""

    def __init__(self, detector, eps: Any = 8 / 255, steps: int = 100, samples: int = 128, delta: float = 0.01,
                 lr: float = 0.01, restarts: int = 1, target: str = "both", seed: int = 0, batch_size: int = 16):
        super().__init__(detector, eps, target, seed, batch_size)
        require_at_least_one(steps=steps, samples=samples, restarts=restarts)
        if not (0 < delta < 1 and 0 < lr < 1):
            raise ConfigError(f"spsa: delta (probe size) and lr (Adam's step) must be in (0, 1), got {delta} and {lr}")
        self.steps, self.samples, self.delta, self.lr, self.restarts = steps, samples, float(delta), float(lr), restarts

    def settings(self):
        return {**super().settings(), "steps": self.steps, "samples": self.samples, "restarts": self.restarts}

    @classmethod
    def label_for(cls, s) -> str:
        return f"spsa-{s.steps}x{getattr(s, 'samples', 128)}"

    def perturb(self, images, labels):
        model = as_logits(self.detector)

        def run(x, y):
            probes = max(1, min(self.samples, PROBE_IMAGES // x.shape[0]))
            attack = _InRangeSPSA(model, eps=self.eps, delta=self.delta, lr=self.lr, nb_iter=self.steps,
                                  nb_sample=self.samples, max_batch_size=probes)
            return seeded_restarts(x, self.seed, self.restarts, lambda: attack(x, y))

        return perturb_targets(images, labels, self.target,
                               lambda x, y: batched_worst(model, x, y, self.batch_size, run))
