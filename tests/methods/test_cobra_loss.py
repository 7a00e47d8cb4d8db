"""Tests for the COBRA contrastive losses (robustad.methods.cobra.loss)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustad.errors import ConfigError, InputError
from robustad.methods.cobra.loss import (
    CONTRASTIVE_VARIANTS,
    ContrastiveTerms,
    cobra_contrastive_loss,
    opposite_mask,
    pairwise_log_prob,
    positive_mask,
    shift_classification_loss,
    supcon_positive_mask,
)


def make_batch(n_inst=3, k=3, n_views=2, adv_from=((0, 0, 0), (1, 2, 1)), dim=8, seed=0):
    """Clean rows for every (instance, shift, view), then adversarial copies.

    ``adv_from`` lists (instance, shift, view) of the clean rows that get an
    adversarial copy; the copy carries the same tags but is_clean=False.
    """
    tags = [(i, s, v, True) for i in range(n_inst) for s in range(k) for v in range(n_views)]
    tags += [(i, s, v, False) for (i, s, v) in adv_from]
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(len(tags), dim, generator=gen, dtype=torch.float64)
    inst = torch.tensor([t[0] for t in tags])
    shift = torch.tensor([t[1] for t in tags])
    view = torch.tensor([t[2] for t in tags])
    clean = torch.tensor([t[3] for t in tags])
    return z, inst, shift, view, clean


# ---------------------------------------------------------------------------
# slow reference, written straight from the formulas


def ref_loss(z, inst, shift, view, clean, variant, t=0.5, w=1.0):
    rows = z.tolist()
    inst, shift, view, clean = inst.tolist(), shift.tolist(), view.tolist(), clean.tolist()
    n = len(rows)

    def cos(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        na = math.sqrt(sum(x * x for x in a))
        nb = math.sqrt(sum(x * x for x in b))
        return dot / (na * nb)

    s = [[cos(rows[i], rows[j]) for j in range(n)] for i in range(n)]

    def l(i, p):
        denom = 0.0
        for a in range(n):
            if a != i:
                denom += math.exp(s[i][a] / t)
        return -math.log(math.exp(s[i][p] / t) / denom)

    def mean_pairs(is_pair):
        total, count = 0.0, 0
        for i in range(n):
            for j in range(n):
                if is_pair(i, j):
                    total += l(i, j)
                    count += 1
        return total / count if count else 0.0

    l_cl = mean_pairs(lambda i, j: i != j and inst[i] == inst[j] and shift[i] == shift[j])
    l_opp = mean_pairs(
        lambda i, j: clean[i]
        and clean[j]
        and inst[i] == inst[j]
        and view[i] == view[j]
        and shift[i] != shift[j]
    )
    supcon = mean_pairs(lambda i, j: i != j and (shift[i] == 0) == (shift[j] == 0))
    total = {
        "cobra": l_cl - w * l_opp,
        "cl": l_cl,
        "opposite": -w * l_opp,
        "supcon": supcon,
        "none": 0.0,
    }[variant]
    return total, l_cl, l_opp


@pytest.mark.parametrize("variant", CONTRASTIVE_VARIANTS)
@pytest.mark.parametrize("t,w", [(0.5, 1.0), (0.2, 0.3)])
def test_matches_loop_reference(variant, t, w):
    z, inst, shift, view, clean = make_batch()
    out = cobra_contrastive_loss(
        z, inst, shift, view, clean, variant=variant, temperature=t, opposite_weight=w
    )
    assert isinstance(out, ContrastiveTerms)
    exp_total, exp_cl, exp_opp = ref_loss(z, inst, shift, view, clean, variant, t, w)
    for got in (out.total, out.l_cl, out.l_opp):
        assert got.dim() == 0
    assert out.total.item() == pytest.approx(exp_total, abs=1e-6)
    assert out.l_cl.item() == pytest.approx(exp_cl, abs=1e-6)
    assert out.l_opp.item() == pytest.approx(exp_opp, abs=1e-6)
    # The reference gives distinct values for the terms, so a swapped or
    # mis-masked term cannot pass by accident.
    assert abs(exp_cl - exp_opp) > 1e-3


def test_pairwise_log_prob_against_reference():
    z, *_ = make_batch(seed=3)
    lp = pairwise_log_prob(z, 0.5)
    n = z.shape[0]
    assert lp.shape == (n, n)
    assert torch.isneginf(lp.diagonal()).all()
    # Each row is a distribution over a != i.
    off = lp.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    assert torch.allclose(off.exp().sum(1), torch.ones(n, dtype=torch.float64))
    zn = z / z.norm(dim=1, keepdim=True)
    i, j = 2, 7
    num = math.exp(float(zn[i] @ zn[j]) / 0.5)
    den = sum(math.exp(float(zn[i] @ zn[a]) / 0.5) for a in range(n) if a != i)
    assert lp[i, j].item() == pytest.approx(math.log(num / den), abs=1e-9)


# ---------------------------------------------------------------------------
# masks, checked by hand


def test_masks_by_hand():
    # Rows: 0 (a, s0, v0)  1 (a, s1, v0)  2 (a, s0, v1)  3 (a, s1, v1)
    #       4 (b, s0, v0)  5 (a, s0, v0, adversarial copy of row 0)
    inst = torch.tensor([0, 0, 0, 0, 1, 0])
    shift = torch.tensor([0, 1, 0, 1, 0, 0])
    view = torch.tensor([0, 0, 1, 1, 0, 0])
    clean = torch.tensor([True, True, True, True, True, False])
    expected_pos = torch.tensor(
        [
            [0, 0, 1, 0, 0, 1],
            [0, 0, 0, 1, 0, 0],
            [1, 0, 0, 0, 0, 1],
            [0, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0],
        ],
        dtype=torch.bool,
    )
    expected_opp = torch.tensor(
        [
            [0, 1, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=torch.bool,
    )
    expected_supcon = torch.tensor(
        [
            [0, 0, 1, 0, 1, 1],
            [0, 0, 0, 1, 0, 0],
            [1, 0, 0, 0, 1, 1],
            [0, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 1],
            [1, 0, 1, 0, 1, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(positive_mask(inst, shift), expected_pos)
    assert torch.equal(opposite_mask(inst, shift, view, clean), expected_opp)
    assert torch.equal(supcon_positive_mask(shift), expected_supcon)
    # Without is_clean every row counts as clean: row 5 then opposes row 1.
    all_clean = opposite_mask(inst, shift, view)
    assert all_clean[5, 1] and all_clean[1, 5]
    assert all_clean.sum() == expected_opp.sum() + 2


def test_four_rotations_give_three_opposites():
    k, n_views = 4, 2
    inst = torch.zeros(k * n_views, dtype=torch.long)
    shift = torch.arange(k).repeat_interleave(n_views)
    view = torch.arange(n_views).repeat(k)
    m = opposite_mask(inst, shift, view)
    assert (m.sum(1) == k - 1).all()


# ---------------------------------------------------------------------------
# the opposite term pushes an image away from its pseudo-anomaly


def _opposite_similarity(z, inst, shift, view, clean):
    zn = F.normalize(z, dim=1)
    m = opposite_mask(inst, shift, view, clean)
    return (zn @ zn.T)[m].mean().item()


def _positive_similarity(z, inst, shift):
    zn = F.normalize(z, dim=1)
    return (zn @ zn.T)[positive_mask(inst, shift)].mean().item()


def _train(variant, steps=20, lr=0.5):
    z0, inst, shift, view, clean = make_batch(n_inst=4, k=4, seed=11)
    z0 = z0.float()
    feats = torch.nn.Parameter(z0.clone())
    opt = torch.optim.SGD([feats], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        cobra_contrastive_loss(feats, inst, shift, view, clean, variant=variant).total.backward()
        opt.step()
    before = (
        _opposite_similarity(z0, inst, shift, view, clean),
        _positive_similarity(z0, inst, shift),
    )
    after = (
        _opposite_similarity(feats.detach(), inst, shift, view, clean),
        _positive_similarity(feats.detach(), inst, shift),
    )
    return before, after


def test_opposite_term_pushes_pseudo_anomalies_apart():
    (opp_before, _), (opp_after, _) = _train("opposite")
    assert opp_after < opp_before - 0.05


def test_cl_term_pulls_positives_together():
    (_, pos_before), (_, pos_after) = _train("cl")
    assert pos_after > pos_before + 0.01


def test_cobra_separates_opposites_more_than_cl():
    (opp_start, _), (opp_cl, _) = _train("cl")
    (_, _), (opp_cobra, _) = _train("cobra")
    assert opp_cobra < opp_cl
    # L_CL alone barely touches the image/pseudo-anomaly similarity.
    assert abs(opp_cl - opp_start) < abs(opp_cobra - opp_start) / 4


def test_encoder_gradient_step_on_opposite_term():
    # Same check through a tiny linear encoder on random "images", where a
    # pseudo-anomaly is a rotation of its image.
    gen = torch.Generator().manual_seed(5)
    imgs = torch.rand(3, 1, 6, 6, generator=gen)
    k = 4
    x = torch.stack([torch.rot90(imgs, r, dims=(2, 3)) for r in range(k)], 1)  # [3,k,1,6,6]
    x = x.reshape(-1, 36)
    inst = torch.arange(3).repeat_interleave(k)
    shift = torch.arange(k).repeat(3)
    view = torch.zeros_like(inst)
    torch.manual_seed(0)
    enc = torch.nn.Linear(36, 16)
    opt = torch.optim.SGD(enc.parameters(), lr=0.2)
    before = _opposite_similarity(enc(x).detach(), inst, shift, view, None)
    for _ in range(10):
        opt.zero_grad()
        cobra_contrastive_loss(enc(x), inst, shift, view, variant="opposite").total.backward()
        opt.step()
    after = _opposite_similarity(enc(x).detach(), inst, shift, view, None)
    assert after < before


# ---------------------------------------------------------------------------
# invariances and edge cases


@pytest.mark.parametrize("variant", CONTRASTIVE_VARIANTS)
def test_permutation_invariance(variant):
    z, inst, shift, view, clean = make_batch(seed=4)
    perm = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(1))
    a = cobra_contrastive_loss(z, inst, shift, view, clean, variant=variant)
    b = cobra_contrastive_loss(
        z[perm], inst[perm], shift[perm], view[perm], clean[perm], variant=variant
    )
    for x, y in ((a.total, b.total), (a.l_cl, b.l_cl), (a.l_opp, b.l_opp)):
        assert torch.allclose(x, y, atol=1e-10)


@pytest.mark.parametrize("variant", CONTRASTIVE_VARIANTS)
def test_scale_invariance(variant):
    z, inst, shift, view, clean = make_batch(seed=5)
    a = cobra_contrastive_loss(z, inst, shift, view, clean, variant=variant)
    b = cobra_contrastive_loss(7.5 * z, inst, shift, view, clean, variant=variant)
    assert torch.allclose(a.total, b.total, atol=1e-10)


@pytest.mark.parametrize("variant", CONTRASTIVE_VARIANTS)
def test_gradients_finite(variant):
    z, inst, shift, view, clean = make_batch(seed=6)
    z = z.clone().requires_grad_(True)
    out = cobra_contrastive_loss(z, inst, shift, view, clean, variant=variant)
    out.total.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    if variant == "none":
        assert out.total.item() == 0.0 and (z.grad == 0).all()
    else:
        assert z.grad.abs().sum() > 0
    assert not out.l_cl.requires_grad and not out.l_opp.requires_grad


@pytest.mark.parametrize("variant", CONTRASTIVE_VARIANTS)
def test_empty_opposite_mask_k1(variant):
    z, inst, shift, view, clean = make_batch(k=1, adv_from=((0, 0, 0),), seed=7)
    z = z.clone().requires_grad_(True)
    out = cobra_contrastive_loss(z, inst, shift, view, clean, variant=variant)
    assert out.l_opp.item() == 0.0
    assert torch.isfinite(out.total) and torch.isfinite(out.l_cl)
    out.total.backward()
    assert torch.isfinite(z.grad).all()
    if variant == "cobra":
        assert torch.allclose(out.total.detach(), out.l_cl)


def test_empty_positive_mask_gives_zero():
    # Every row its own instance: no positives at all.
    z = torch.randn(4, 5, dtype=torch.float64)
    ids = torch.arange(4)
    out = cobra_contrastive_loss(z, ids, torch.zeros(4, dtype=torch.long), ids * 0, variant="cl")
    assert out.total.item() == 0.0 and out.l_cl.item() == 0.0


def test_zero_weight_cobra_equals_cl():
    z, inst, shift, view, clean = make_batch(seed=8)
    a = cobra_contrastive_loss(z, inst, shift, view, clean, opposite_weight=0.0)
    b = cobra_contrastive_loss(z, inst, shift, view, clean, variant="cl")
    assert torch.allclose(a.total, b.total)


def test_shift_classification_loss():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 2])
    expected = 0.5 * (
        -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))
        - math.log(1 / (1 + math.e + 1))
    )
    assert shift_classification_loss(logits, target).item() == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------
# errors


def test_bad_inputs_raise():
    z, inst, shift, view, clean = make_batch()
    with pytest.raises(InputError):
        cobra_contrastive_loss(z[0], inst, shift, view, clean)
    bad = z.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(InputError):
        cobra_contrastive_loss(bad, inst, shift, view, clean)
    bad[3, 1] = float("inf")
    with pytest.raises(InputError):
        pairwise_log_prob(bad, 0.5)
    with pytest.raises(InputError):
        cobra_contrastive_loss(z, inst[:-1], shift, view, clean)
    with pytest.raises(InputError):
        cobra_contrastive_loss(z, inst, shift, view[1:], clean)
    with pytest.raises(InputError):
        cobra_contrastive_loss(z, inst, shift, view, clean[:3])
    with pytest.raises(InputError):
        cobra_contrastive_loss(z, inst.double(), shift, view, clean)
    with pytest.raises(InputError):
        cobra_contrastive_loss(z, inst, shift, view, clean.long())
    with pytest.raises(InputError):
        cobra_contrastive_loss(z[:1], inst[:1], shift[:1], view[:1], clean[:1])


@pytest.mark.parametrize("t", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_temperature_raises(t):
    z, inst, shift, view, clean = make_batch()
    with pytest.raises(ConfigError):
        cobra_contrastive_loss(z, inst, shift, view, clean, temperature=t)
    with pytest.raises(ConfigError):
        pairwise_log_prob(z, t)


def test_bad_variant_and_weight_raise():
    z, inst, shift, view, clean = make_batch()
    with pytest.raises(ConfigError) as exc:
        cobra_contrastive_loss(z, inst, shift, view, clean, variant="simclr")
    for name in CONTRASTIVE_VARIANTS:
        assert name in str(exc.value)
    with pytest.raises(ConfigError):
        cobra_contrastive_loss(z, inst, shift, view, clean, opposite_weight=-1.0)


def test_shift_classification_bad_inputs():
    with pytest.raises(InputError):
        shift_classification_loss(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(InputError):
        shift_classification_loss(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(InputError):
        shift_classification_loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(InputError):
        shift_classification_loss(torch.zeros(2, 3), torch.tensor([-1, 0]))
    with pytest.raises(InputError):
        shift_classification_loss(torch.full((2, 3), float("nan")), torch.tensor([0, 1]))
