"""Inner maximisation for adversarial training: L-inf PGD on an arbitrary loss of the input."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


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
    """
    x = x.detach()
    if eps <= 0 or steps <= 0:
        return x.clone()
    step_size = 2.5 * eps / steps if step_size is None else step_size
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
