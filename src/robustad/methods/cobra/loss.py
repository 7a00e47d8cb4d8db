"""Contrastive losses of COBRA and its ablations.

A training batch is a flat set of ``N`` projected features ``z`` with integer
tags saying where each row came from:

* ``instance_ids`` - the source image,
* ``shift_ids`` - the transformation ``t_k`` applied to it (``0`` is the
  identity, ``k >= 1`` a pseudo-anomaly of that image),
* ``view_ids`` - the light-augmentation view (an adversarial copy keeps the
  view id of the clean view it was crafted from),
* ``is_clean`` - ``False`` for adversarial copies.

With cosine similarities ``s_ij`` and temperature ``t`` the per-pair term is::

    l(i, j) = -log( exp(s_ij / t) / sum_{a != i} exp(s_ia / t) )

``L_CL`` averages ``l`` over every (anchor, positive) pair, where positives
share the instance and the shift. ``L_OPP`` averages ``l`` over every (clean
anchor, clean opposite) pair, where an opposite is the same image in the same
view under a different shift. COBRA minimises ``L_CL - w * L_OPP``: it pulls
views and adversarial copies of one shifted image together and explicitly
pushes an image away from its own pseudo-anomalies, instead of letting those
spurious negatives be just two of many rows in the denominator.

Everything is computed with ``[N, N]`` boolean masks; nothing loops over
samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from robustad.errors import ConfigError, InputError

__all__ = [
    "CONTRASTIVE_VARIANTS",
    "ContrastiveTerms",
    "cobra_contrastive_loss",
    "opposite_mask",
    "pairwise_log_prob",
    "positive_mask",
    "shift_classification_loss",
    "supcon_positive_mask",
]

CONTRASTIVE_VARIANTS: tuple[str, ...] = ("cobra", "cl", "opposite", "supcon", "none")


@dataclass
class ContrastiveTerms:
    """Result of :func:`cobra_contrastive_loss`; all fields are 0-dim tensors.

    ``total`` is the value to minimise and carries the autograd graph.
    ``l_cl`` (instance-level contrastive term) and ``l_opp`` (opposite-pair
    term) are always computed, whatever the variant, and are returned
    *detached*: they are for logging and comparing runs, and detaching them
    keeps a stray ``backward()`` on them from silently training a term the
    chosen variant leaves out. An empty pair set gives ``0`` rather than NaN.
    """

    total: Tensor
    l_cl: Tensor
    l_opp: Tensor


# ---------------------------------------------------------------------------
# validation helpers


def _check_features(z: Tensor) -> None:
    if not isinstance(z, Tensor):
        raise InputError(f"z must be a torch.Tensor of shape [N, D], got {type(z).__name__}.")
    if z.dim() != 2:
        raise InputError(f"z must be 2-D [N, D], got shape {tuple(z.shape)}.")
    if not z.is_floating_point():
        raise InputError(f"z must be a floating-point tensor, got dtype {z.dtype}.")
    if z.shape[0] < 2:
        # With one row the softmax over a != i is empty and every term undefined.
        raise InputError(f"z needs at least 2 rows to form pairs, got {z.shape[0]}.")
    if not bool(torch.isfinite(z).all()):
        raise InputError("z contains NaN or inf values; check the encoder output and learning rate.")


def _check_temperature(temperature: float) -> None:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(f"temperature must be a positive number, got {temperature!r}.") from None
    if not math.isfinite(t) or t <= 0.0:
        raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}.")


def _as_tags(
    tags: Tensor | Sequence[int],
    name: str,
    n: int | None,
    device: torch.device | None,
    *,
    boolean: bool = False,
) -> Tensor:
    """Turn tags into a 1-D tensor of length ``n`` (integer, or bool if ``boolean``)."""
    try:
        t = torch.as_tensor(tags, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{name} could not be turned into a tensor: {exc}") from None
    if t.dim() != 1:
        raise InputError(f"{name} must be 1-D, got shape {tuple(t.shape)}.")
    if n is not None and t.shape[0] != n:
        raise InputError(f"{name} has length {t.shape[0]} but the batch has {n} rows.")
    if boolean:
        if t.dtype != torch.bool:
            raise InputError(f"{name} must be a bool tensor, got dtype {t.dtype}.")
    elif t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name} must hold integers, got dtype {t.dtype}.")
    return t


def _check_variant(variant: str) -> None:
    if variant not in CONTRASTIVE_VARIANTS:
        raise ConfigError(
            f"Unknown contrastive variant {variant!r}; valid ones are: "
            + ", ".join(CONTRASTIVE_VARIANTS)
            + "."
        )


# ---------------------------------------------------------------------------
# building blocks


def pairwise_log_prob(z: Tensor, temperature: float) -> Tensor:
    """Return ``[N, N]`` log-probabilities ``log p(j | i)``, i.e. ``-l(i, j)``.

    Row ``i`` is a log-softmax of ``s_ij / t`` over all ``j != i``; features are
    L2-normalised here so ``s`` is the cosine similarity. The diagonal is
    ``-inf`` (an anchor is never its own candidate). Needs ``N >= 2``.
    """
    _check_features(z)
    _check_temperature(temperature)
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T) / float(temperature)
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    # -inf on the diagonal drops self-similarity from the log-sum-exp; fill
    # (not add) so the diagonal gets no gradient.
    logits = logits.masked_fill(eye, float("-inf"))
    return logits - torch.logsumexp(logits, dim=1, keepdim=True)


def positive_mask(instance_ids: Tensor, shift_ids: Tensor) -> Tensor:
    """``[N, N]`` bool: ``j`` is a positive of ``i`` (same instance and shift, ``j != i``).

    Clean and adversarial rows are treated alike, so other views, adversarial
    copies and (for a copy) its clean original are all positives.
    """
    inst = _as_tags(instance_ids, "instance_ids", None, None)
    shift = _as_tags(shift_ids, "shift_ids", inst.shape[0], inst.device)
    same = (inst[:, None] == inst[None, :]) & (shift[:, None] == shift[None, :])
    eye = torch.eye(inst.shape[0], dtype=torch.bool, device=inst.device)
    return same & ~eye


def opposite_mask(
    instance_ids: Tensor,
    shift_ids: Tensor,
    view_ids: Tensor,
    is_clean: Tensor | None = None,
) -> Tensor:
    """``[N, N]`` bool: ``j`` is an opposite of ``i``.

    Both rows clean, same instance, same view, different shift - an image and
    its own pseudo-anomaly seen through identical augmentation. Differing shifts
    already exclude ``j == i``. ``is_clean=None`` means every row is clean.
    """
    inst = _as_tags(instance_ids, "instance_ids", None, None)
    n, dev = inst.shape[0], inst.device
    shift = _as_tags(shift_ids, "shift_ids", n, dev)
    view = _as_tags(view_ids, "view_ids", n, dev)
    if is_clean is None:
        clean = torch.ones(n, dtype=torch.bool, device=dev)
    else:
        clean = _as_tags(is_clean, "is_clean", n, dev, boolean=True)
    return (
        (inst[:, None] == inst[None, :])
        & (view[:, None] == view[None, :])
        & (shift[:, None] != shift[None, :])
        & clean[:, None]
        & clean[None, :]
    )


def supcon_positive_mask(shift_ids: Tensor) -> Tensor:
    """``[N, N]`` bool for the two-class supervised-contrastive ablation.

    Classes are normal (shift 0) versus pseudo-anomaly (any other shift);
    ``j != i`` is a positive of ``i`` when both fall in the same class.
    """
    shift = _as_tags(shift_ids, "shift_ids", None, None)
    normal = shift == 0
    eye = torch.eye(shift.shape[0], dtype=torch.bool, device=shift.device)
    return (normal[:, None] == normal[None, :]) & ~eye


def _mean_over_pairs(log_prob: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``-log_prob`` over the pairs in ``mask``; ``0`` if the mask is empty."""
    # where (not multiply): off-mask entries include the -inf diagonal, and
    # -inf * 0 would be NaN.
    picked = torch.where(mask, -log_prob, torch.zeros_like(log_prob))
    count = mask.sum().clamp_min(1).to(picked.dtype)
    return picked.sum() / count


# ---------------------------------------------------------------------------
# losses


def cobra_contrastive_loss(
    z: Tensor,
    instance_ids: Tensor,
    shift_ids: Tensor,
    view_ids: Tensor,
    is_clean: Tensor | None = None,
    *,
    variant: str = "cobra",
    temperature: float = 0.5,
    opposite_weight: float = 1.0,
) -> ContrastiveTerms:
    """Contrastive objective of COBRA or one of its ablations.

    ``variant`` picks ``total``:

    * ``"cobra"``    - ``L_CL - w * L_OPP``
    * ``"cl"``       - ``L_CL`` only (CSI-style contrast over shifted instances)
    * ``"opposite"`` - ``-w * L_OPP`` only
    * ``"supcon"``   - two-class supervised contrast, normal vs pseudo-anomaly,
      averaged over pairs like ``L_CL``
    * ``"none"``     - ``0`` (still attached to ``z`` so ``backward`` works)

    ``w`` is ``opposite_weight`` (finite, ``>= 0``). ``is_clean=None`` marks
    every row clean. See :class:`ContrastiveTerms` for what is returned.
    """
    _check_variant(variant)
    _check_features(z)
    _check_temperature(temperature)
    try:
        w = float(opposite_weight)
    except (TypeError, ValueError):
        raise ConfigError(f"opposite_weight must be a number, got {opposite_weight!r}.") from None
    if not math.isfinite(w) or w < 0.0:
        raise ConfigError(f"opposite_weight must be a finite number >= 0, got {opposite_weight!r}.")

    n, dev = z.shape[0], z.device
    inst = _as_tags(instance_ids, "instance_ids", n, dev)
    shift = _as_tags(shift_ids, "shift_ids", n, dev)
    view = _as_tags(view_ids, "view_ids", n, dev)
    clean = None if is_clean is None else _as_tags(is_clean, "is_clean", n, dev, boolean=True)

    log_prob = pairwise_log_prob(z, temperature)
    l_cl = _mean_over_pairs(log_prob, positive_mask(inst, shift))
    l_opp = _mean_over_pairs(log_prob, opposite_mask(inst, shift, view, clean))

    if variant == "cobra":
        total = l_cl - w * l_opp
    elif variant == "cl":
        total = l_cl
    elif variant == "opposite":
        total = -w * l_opp
    elif variant == "supcon":
        total = _mean_over_pairs(log_prob, supcon_positive_mask(shift))
    else:  # "none"
        # Zero that still depends on z, so a caller adding it to other losses
        # or calling backward on it alone gets zero gradients, not an error.
        total = (z * 0.0).sum()

    return ContrastiveTerms(total=total, l_cl=l_cl.detach(), l_opp=l_opp.detach())


def shift_classification_loss(logits: Tensor, shift_ids: Tensor) -> Tensor:
    """``L_CLS``: mean cross-entropy of the transformation head.

    ``logits`` is ``[N, K]`` (one column per transformation); ``shift_ids``
    holds the index ``0 <= k < K`` of the transformation applied to each row.
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise InputError(f"logits must be a 2-D tensor [N, K], got {shape}.")
    if not logits.is_floating_point():
        raise InputError(f"logits must be floating point, got dtype {logits.dtype}.")
    n, k = logits.shape
    if n == 0 or k == 0:
        raise InputError(f"logits must be non-empty, got shape {(n, k)}.")
    if not bool(torch.isfinite(logits).all()):
        raise InputError("logits contain NaN or inf values.")
    target = _as_tags(shift_ids, "shift_ids", n, logits.device)
    if bool(((target < 0) | (target >= k)).any()):
        raise InputError(
            f"shift_ids must lie in [0, {k}) to match the {k} logit columns, "
            f"got values in [{int(target.min())}, {int(target.max())}]."
        )
    return F.cross_entropy(logits, target.long())
