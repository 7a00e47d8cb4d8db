"""Inner maximisation for adversarial training: L-inf PGD on an arbitrary loss of the input."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn

GUARD_ACTIONS = ("fallback", "stop")


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Use batch statistics but leave BatchNorm's running averages untouched.

    Crafting adversaries runs many extra forward passes; letting them update the running
    statistics would tilt them toward adversarial inputs. Momentum 0 keeps them as they are.
    """
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            saved.append((module, module.momentum))
            module.momentum = 0.0
    try:
        yield
    finally:
        for module, momentum in saved:
            module.momentum = momentum


def default_step_size(eps: float, steps: int) -> float:
    """2.5 * eps / steps for PGD; 1.25 * eps for one step from a random start (FGSM-RS, Wong et al.
    2020), since a step of 2 * eps or more lands every pixel on the budget's corner whatever the
    start, which is plain FGSM and overfits catastrophically."""
    return 1.25 * eps if steps == 1 else 2.5 * eps / steps


def pgd_ascend_loss(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return x' with ||x' - x||_inf <= eps and x' in [0,1] that (locally) maximises loss_fn(x').

    loss_fn maps a batch to a scalar; its gradient is taken only with respect to the input.
    step_size None: default_step_size(eps, steps).
    """
    x = x.detach()
    if eps <= 0 or steps <= 0:
        return x.clone()
    step_size = default_step_size(eps, steps) if step_size is None else step_size
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = (x + (2 * noise - 1) * eps).clamp(0, 1)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = loss_fn(x_adv)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


class OverfitGuard:
    """Watch for catastrophic overfitting in few-step adversarial training (FGSM-RS above all).

    Single-step training can, within an epoch, become robust to its own attack only and lose all
    robustness to a multi-step one (Wong et al. 2020). After every epoch the training loop calls
    measure(): `probe(generator)` gives held-out figures, "pgd" among them (higher = more robust,
    e.g. a head's accuracy under multi-step PGD). A fall of more than `drop` below the best "pgd"
    so far counts as a collapse: the loop discards that epoch's updates, then either hands the
    objective multi-step adversaries for the remaining epochs (action "fallback", via
    `fall_back()`) or ends training (action "stop"). The probe draws its random starts from its
    own generator, seeded per epoch, so watching changes nothing in the training itself.
    """

    def __init__(self, probe: Callable[[torch.Generator], dict[str, float]], drop: float, action: str,
                 fall_back: Callable[[], None], seed: int, device: torch.device | str = "cpu"):
        if action not in GUARD_ACTIONS:
            raise ValueError(f"action must be one of {GUARD_ACTIONS}, got {action!r}")
        self.probe, self.drop, self.action, self.fall_back, self.seed = probe, drop, action, fall_back, seed
        self.device = torch.device(device)
        self.best: float | None = None
        self.collapsed_at: int | None = None  # the epoch whose updates were discarded
        self.stopped = False

    def measure(self, epoch: int) -> dict[str, float]:
        """The probe's figures after `epoch` (1-based); deterministic for given weights."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + epoch)
        return self.probe(generator)

    def collapsed(self, figures: dict[str, float]) -> bool:
        """Whether these figures show a collapse; the best so far is updated when they do not."""
        value = figures["pgd"]
        if self.best is not None and value < self.best - self.drop:
            return True
        self.best = value if self.best is None else max(self.best, value)
        return False

    def react(self, epoch: int) -> str:
        """After a collapse at `epoch` (its updates already discarded): fall back or stop; says which."""
        self.collapsed_at = epoch
        if self.action == "stop":
            self.stopped = True
            return "stopped"
        self.fall_back()
        return "fell back to multi-step adversaries"

    @property
    def watching(self) -> bool:
        """True until a collapse has been acted on: afterwards there is nothing left to guard."""
        return self.collapsed_at is None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (JSON), so that a resumed run guards as the first one would."""
        return {"best": self.best, "collapsed_at": self.collapsed_at, "stopped": self.stopped}

    def restore(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.collapsed_at = state.get("collapsed_at")
        self.stopped = bool(state.get("stopped", False))
        if self.collapsed_at is not None and not self.stopped:
            self.fall_back()
