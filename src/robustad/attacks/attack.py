"""Attacks as objects with one calling convention, as torchattacks users know them.

    atk = PGD(detector, eps=8/255, steps=50, target="both")
    x_adv = atk(images, labels)          # labels: 1 = anomaly; returns perturbed images

Every attack is built with the detector it attacks and its budget, is called on images and labels,
and returns images of the same shape and type (a tensor for a tensor, a NumPy array for an array,
uint8 for uint8 rounded back to 8 bits). What the attack maximises is the detector's error:
normal images pushed up, anomalies down, or both ("target"). Each class registers itself under
its kind in ATTACKS, which the attack suite (robustad.evaluation.suite) builds its attacks from.
The functions underneath (attack_pgd, attack_apgd, ...) stay available for callers that hold a
ScoreAsLogits model rather than a detector.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, ClassVar

import numpy as np
import torch

from robustad.attacks.adaptive import AdaptiveResult, attack_adaptive
from robustad.attacks.autoattack import attack_apgd, attack_square
from robustad.attacks.base import TARGETS, AttackConfig, as_logits
from robustad.attacks.pgd import attack_pgd, attack_score
from robustad.config import parse_eps
from robustad.data.arrays import as_tensor
from robustad.errors import ConfigError, InputError

__all__ = ["APGD", "ATTACKS", "Adaptive", "Attack", "PGD", "Square", "Transfer", "load_attacks"]

ATTACKS: dict[str, type["Attack"]] = {}


class Attack:
    """Base class: Attack(detector, eps, target, seed, batch_size, **settings)(images, labels) -> images."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str = "", **kwargs):
        super().__init_subclass__(**kwargs)
        if kind:
            cls.kind = kind
            ATTACKS[kind] = cls

    def __init__(self, detector, eps: Any = 8 / 255, target: str = "both", seed: int = 0, batch_size: int = 256):
        if target not in TARGETS:
            raise ConfigError(f"attack target must be one of {', '.join(TARGETS)}, got {target!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        self.detector = detector
        self.eps = parse_eps(eps, f"{self.kind} eps")
        self.target, self.seed, self.batch_size = target, int(seed), batch_size

    # --- the calling convention -----------------------------------------------------------------
    def __call__(self, images, labels):
        x, as_input = self._images(images)
        y = self._labels(labels, x.shape[0]).to(x.device)
        with torch.enable_grad():
            x_adv = self.perturb(x, y)
        return as_input(x_adv.detach())

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def label_for(cls, settings: Any) -> str:
        """The attack's name in tables, from its settings (an AttackSpec); cells are matched by it."""
        return cls.kind

    @classmethod
    def from_settings(cls, detector, settings: Any, **fixed) -> "Attack":
        """Build from an object whose attributes name this class's keyword arguments (the suite's
        AttackSpec); `fixed` (eps, target, batch_size, surrogate) wins over them."""
        names = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "detector")]
        kwargs = {n: getattr(settings, n) for n in names if n not in fixed and hasattr(settings, n)}
        return cls(detector, **kwargs, **fixed)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({settings})"

    def settings(self) -> dict[str, Any]:
        return {"eps": self.eps, "target": self.target, "seed": self.seed}

    # --- inputs ---------------------------------------------------------------------------------
    @staticmethod
    def _images(images):
        """Float tensor in [0, 1] on the CPU, and the function that turns results back into the caller's type."""
        array = isinstance(images, np.ndarray)
        x = as_tensor(images, "images") if array else images
        if not torch.is_tensor(x):
            raise InputError(f"an attack takes images [N,C,H,W] as a tensor or NumPy array, got {type(images).__name__}")
        uint8 = x.dtype == torch.uint8
        x = x.float().div(255.0) if uint8 else x
        if x.ndim != 4 or not x.is_floating_point():
            raise InputError(f"an attack takes float images [N,C,H,W] in [0,1] (or uint8), got {tuple(x.shape)} {x.dtype}")
        if x.numel() and (x.min() < 0 or x.max() > 1 or not torch.isfinite(x).all()):
            raise InputError("attack inputs must be finite and in [0, 1]; scale them first")
        device, dtype = x.device, x.dtype

        def back(out: torch.Tensor):
            out = out.to(device=device, dtype=dtype)
            if uint8:
                out = out.mul(255.0).round().clamp(0, 255).to(torch.uint8)
            return out.cpu().numpy() if array else out

        return x.detach().float(), back

    @staticmethod
    def _labels(labels, n: int) -> torch.Tensor:
        y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).flatten().long()
        if y.numel() != n or not bool(((y == 0) | (y == 1)).all()):
            raise InputError(f"labels must be {n} values of 0 (normal) or 1 (anomaly), one per image")
        return y


class PGD(Attack, kind="pgd"):
    """L-inf PGD on the score (torchattacks' PGD for the constant schedule, robustad's loop otherwise)."""

    def __init__(self, detector, eps: Any = 8 / 255, steps: int = 50, restarts: int = 1, step_size: Any = None,
                 schedule: str = "constant", target: str = "both", seed: int = 0, batch_size: int = 256):
        super().__init__(detector, eps, target, seed, batch_size)
        self.config = AttackConfig(name="pgd", eps=self.eps, steps=steps, restarts=restarts, step_size=step_size,
                                   target=target, seed=seed, schedule=schedule).validate()

    def settings(self):
        c = self.config
        return {**super().settings(), "steps": c.steps, "restarts": c.restarts, "schedule": c.schedule}

    @classmethod
    def label_for(cls, s) -> str:
        return f"pgd-{s.steps}x{s.restarts}" + ("" if s.schedule == "constant" else f"-{s.schedule}")

    def perturb(self, images, labels):
        return attack_pgd(as_logits(self.detector), images, labels, self.config, batch_size=self.batch_size)


class APGD(Attack, kind="apgd"):
    """APGD-CE (Croce & Hein 2020) on the score, through torchattacks."""

    def __init__(self, detector, eps: Any = 8 / 255, steps: int = 100, restarts: int = 1, target: str = "both",
                 seed: int = 0, batch_size: int = 256):
        super().__init__(detector, eps, target, seed, batch_size)
        require_at_least_one(steps=steps, restarts=restarts)
        self.steps, self.restarts = steps, restarts

    def settings(self):
        return {**super().settings(), "steps": self.steps, "restarts": self.restarts}

    @classmethod
    def label_for(cls, s) -> str:
        return f"apgd-ce-{s.steps}x{s.restarts}"

    def perturb(self, images, labels):
        return attack_apgd(as_logits(self.detector), images, labels, self.eps, self.target, steps=self.steps,
                           restarts=self.restarts, seed=self.seed, batch_size=self.batch_size)


class Square(Attack, kind="square"):
    """Square attack (Andriushchenko et al. 2020): random search on the score alone, no gradients."""

    def __init__(self, detector, eps: Any = 8 / 255, queries: int = 1000, restarts: int = 1, target: str = "both",
                 seed: int = 0, batch_size: int = 256):
        super().__init__(detector, eps, target, seed, batch_size)
        require_at_least_one(queries=queries, restarts=restarts)
        self.queries, self.restarts = queries, restarts

    def settings(self):
        return {**super().settings(), "queries": self.queries, "restarts": self.restarts}

    @classmethod
    def label_for(cls, s) -> str:
        return f"square-{s.queries}"

    def perturb(self, images, labels):
        return attack_square(as_logits(self.detector), images, labels, self.eps, self.target, queries=self.queries,
                             restarts=self.restarts, seed=self.seed, batch_size=self.batch_size)


class Adaptive(Attack, kind="adaptive"):
    """The adaptive attacks built for the detector's score (surrogates, EOT); per image the worst variant.

    After a call, ``result_`` holds every variant's images and the variants skipped for this detector.
    """

    def __init__(self, detector, eps: Any = 8 / 255, variants: tuple[str, ...] = ("lse:0.02", "similarity", "shift", "eot"),
                 steps: int = 50, restarts: int = 1, schedule: str = "cosine", step_size: Any = None,
                 eot_samples: int = 4, target: str = "both", seed: int = 0, batch_size: int = 256):
        super().__init__(detector, eps, target, seed, batch_size)
        self.variants = tuple(variants)
        self.steps, self.restarts, self.schedule, self.eot_samples = steps, restarts, schedule, eot_samples
        self.step_size = AttackConfig(steps=steps, restarts=restarts, schedule=schedule, step_size=step_size
                                      ).validate().step_size
        require_at_least_one(eot_samples=eot_samples)
        self.result_: AdaptiveResult | None = None

    def settings(self):
        return {**super().settings(), "variants": self.variants, "steps": self.steps, "restarts": self.restarts}

    def perturb(self, images, labels):
        self.result_ = attack_adaptive(self.detector, images, labels, self.eps, self.target, variants=self.variants,
                                       steps=self.steps, restarts=self.restarts, schedule=self.schedule,
                                       step_size=self.step_size, eot_samples=self.eot_samples, seed=self.seed,
                                       batch_size=self.batch_size)
        return self.result_.images


class Transfer(Attack, kind="transfer"):
    """PGD crafted on another detector (the surrogate), to be judged on `detector` (or any other)."""

    def __init__(self, detector, surrogate, eps: Any = 8 / 255, steps: int = 100, restarts: int = 1,
                 schedule: str = "cosine", step_size: Any = None, target: str = "both", seed: int = 0,
                 batch_size: int = 256):
        super().__init__(detector, eps, target, seed, batch_size)
        require_at_least_one(steps=steps, restarts=restarts)
        self.surrogate, self.steps, self.restarts, self.schedule = surrogate, steps, restarts, schedule
        self.step_size = AttackConfig(steps=steps, restarts=restarts, schedule=schedule, step_size=step_size
                                      ).validate().step_size

    def settings(self):
        return {**super().settings(), "steps": self.steps, "restarts": self.restarts}

    def perturb(self, images, labels):
        return attack_score(self.surrogate, images, labels, self.eps, self.target, steps=self.steps,
                            restarts=self.restarts, schedule=self.schedule, step_size=self.step_size, seed=self.seed,
                            batch_size=self.batch_size)


def require_at_least_one(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")


def load_attacks() -> dict[str, type[Attack]]:
    """Import every module of robustad.attacks (an Attack subclass registers itself when its module
    loads), so a new attack is one new module; return the registry."""
    package = importlib.import_module("robustad.attacks")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"robustad.attacks.{module.name}")
    return ATTACKS
