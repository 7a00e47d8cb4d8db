"""Adaptive attack on the kNN (PatchCore-style) score: a smooth stand-in for its hard max and min.

Real data: scikit-learn digits, 0 = normal, a width-4 backbone (seconds on one CPU thread).
"""

import pytest
import torch

from robustad.attacks.adaptive import (
    KNN_DEFAULT_VARIANTS,
    attack_adaptive,
    knn_surrogate,
    knn_surrogate_from_features,
    parse_variant,
)
from robustad.attacks.base import attack_gain
from robustad.attacks.pgd import attack_score
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc
from robustad.evaluation.suite import AttackSpec, SuiteConfig, run_suite
from robustad.methods.deep_svdd.detector import DeepSVDD
from robustad.methods.knn.detector import KNNDetector
from tests.conftest import TINY

EPS = 8 / 255


@pytest.fixture(scope="module")
def knn(digits_split):
    torch.manual_seed(0)
    return KNNDetector(backbone_overrides=TINY).fit(digits_split.train, progress=False)


def test_hard_surrogate_is_the_real_score_and_a_cold_one_is_close(knn, digits_split):
    scorer = knn.scorer
    x = knn.prepare(digits_split.test[:16])
    with torch.no_grad():
        real = scorer(x)
        assert torch.equal(knn_surrogate(scorer, x), real)
        assert torch.allclose(knn_surrogate(scorer, x, temperature=1e-4), real, rtol=1e-3, atol=1e-5)
        warm = knn_surrogate(scorer, x, temperature=0.05)
        assert torch.isfinite(warm).all() and not torch.allclose(warm, real)


def test_soft_surrogate_spreads_the_gradient_over_patches_and_neighbours(knn, digits_split):
    scorer = knn.scorer
    x = knn.prepare(digits_split.test[:8])
    with torch.no_grad():
        feats = scorer.features(x)  # [8, 16, D]: a 4x4 patch grid
    assert feats.shape[1] > 1

    def patches_with_gradient(temperature):
        f = feats.clone().requires_grad_(True)
        knn_surrogate_from_features(scorer, f, temperature).sum().backward()
        return (f.grad.norm(dim=2) > 0).sum(dim=1)  # per image

    hard, soft = patches_with_gradient(None), patches_with_gradient(0.05)
    assert (hard == 1).all()  # the max over patches: one patch per image gets all the gradient
    assert (soft > 1).all() and soft.sum() > 4 * hard.sum()

    # the neighbours: with a bank that takes gradients, the hard min reaches one entry per image,
    # the soft-min over the 16 nearest reaches many
    # (a plain assignment, restored by hand: monkeypatch would delete the buffer on undo)
    original = scorer.bank
    bank = original.detach().clone().requires_grad_(True)

    def bank_rows_with_gradient(temperature):
        bank.grad = None
        knn_surrogate_from_features(scorer, feats[:1], temperature).sum().backward()
        return int((bank.grad.norm(dim=1) > 0).sum())

    scorer.bank = bank
    try:
        hard_rows, soft_rows = bank_rows_with_gradient(None), bank_rows_with_gradient(0.05)
    finally:
        scorer.bank = original
    assert hard_rows == 1 and soft_rows > 1


def test_knn_adaptive_lowers_auroc_and_is_never_better_than_plain_pgd(knn, digits_split):
    x, y = digits_split.test, digits_split.test_labels
    clean = auroc(knn.score(x), y)
    plain = attack_score(knn, x, y, EPS, steps=10)  # cosine schedule, seed 0: attack_adaptive's defaults
    result = attack_adaptive(knn, x, y, EPS, steps=10)  # the suite's default (COBRA) variant names

    # the COBRA names are mapped: plain score + the default knn-soft temperatures; shift and eot skipped
    assert list(result.variants) == ["score", *KNN_DEFAULT_VARIANTS]
    assert {"lse:0.02", "similarity", "shift", "eot"} <= set(result.skipped)
    assert torch.equal(result.variants["score"], plain)  # the same run as plain PGD
    assert (result.images - x).abs().max() <= EPS + 1e-6 and result.images.min() >= 0 and result.images.max() <= 1

    with torch.no_grad():
        adv_scores, plain_scores = knn.score(result.images), knn.score(plain)
    # worst case kept per image: no image is better off than under plain PGD, so neither is the AUROC
    assert (attack_gain(adv_scores, y) >= attack_gain(plain_scores, y)).all()
    a_plain, a_adv = auroc(plain_scores, y), auroc(adv_scores, y)
    assert a_adv <= a_plain + 1e-12
    assert a_adv < clean - 0.1  # seen here: clean 0.97, plain PGD-10 0.67, adaptive 0.60


def test_targets_and_explicit_variants(knn, digits_split):
    x, y = digits_split.test[:20], digits_split.test_labels[:20]
    result = attack_adaptive(knn, x, y, EPS, "normal", steps=2, variants=("knn-soft:0.1:4",))
    assert list(result.variants) == ["score", "knn-soft:0.1:4"]  # plain PGD always runs for kNN
    anomalies = y == 1
    assert torch.equal(result.images[anomalies], x[anomalies])
    assert not torch.equal(result.images[~anomalies], x[~anomalies])


def test_cobra_skips_knn_variants(fitted_cobra, digits_split):
    x, y = digits_split.test[:6], digits_split.test_labels[:6]
    result = attack_adaptive(fitted_cobra, x, y, EPS, steps=1, variants=("knn-soft:0.05", "similarity"))
    assert "knn-soft:0.05" in result.skipped and list(result.variants) == ["similarity"]


@pytest.mark.parametrize("bad", ["knn-soft", "knn-soft:0", "knn-soft:-1", "knn-soft:x", "knn-soft:0.1:0",
                                 "knn-soft:0.1:x", "knn-soft:0.1:4:2", "score:1", "knn"])
def test_bad_knn_variants(bad):
    with pytest.raises(ConfigError):
        parse_variant(bad)


def test_suite_notes_a_detector_the_adaptive_attack_skips(knn, digits_split):
    svdd = DeepSVDD(overrides={"model.width": 4, "model.rep_dim": 8, "train.epochs": 1, "train.batch_size": 16,
                               "train.steps_per_epoch": 2, "train.warmup_epochs": 0}).fit(digits_split.train,
                                                                                          progress=False)
    config = SuiteConfig(eps=("8/255",), targets=("both", "normal"),
                         attacks=(AttackSpec("adaptive", steps=2, schedule="cosine"),))
    x, y = digits_split.test[:20], digits_split.test_labels[:20]
    result = run_suite({"deep-svdd": svdd, "knn": knn}, x, y, config)

    notes = [n for n in result.notes if "deep-svdd" in n]
    assert len(notes) == 1  # once, not once per target
    assert notes[0].startswith("adaptive attack skipped for deep-svdd:") and "no smooth stand-in" in notes[0]
    assert not any(r["attack"].startswith("adaptive") for r in result.rows if r["method"] == "deep-svdd")
    # the kNN detector is attacked: its variants get rows, and nothing is noted for it
    knn_rows = {r["attack"] for r in result.rows if r["method"] == "knn"}
    assert {"adaptive", "adaptive:score", *(f"adaptive:{v}" for v in KNN_DEFAULT_VARIANTS)} <= knn_rows
    assert not any("knn" in n for n in result.notes)
