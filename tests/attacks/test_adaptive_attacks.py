"""Attacks adapted to COBRA's score: the surrogate mirrors the real score, EOT runs only when it matters."""

import pytest
import torch

from robustad.attacks.adaptive import (
    attack_adaptive,
    cobra_surrogate,
    parse_variant,
    reseeded,
    score_depends_on_seed,
)
from robustad.attacks.canaries import PixelKNN
from robustad.errors import ConfigError


def test_surrogate_without_temperature_is_the_real_score(fitted_cobra, digits_split):
    scorer = fitted_cobra.scorer
    x = fitted_cobra.prepare(digits_split.test[:16])
    with torch.no_grad():
        real = scorer(x)
        assert torch.equal(cobra_surrogate(scorer, x), real)
        # the two terms add up to the score (it is linear in them)
        parts = cobra_surrogate(scorer, x, terms="similarity") + cobra_surrogate(scorer, x, terms="shift")
        assert torch.allclose(parts, real, atol=1e-5)
        # a cold log-sum-exp is the max; a warm one is a smooth upper bound minus log(M) * T
        assert torch.allclose(cobra_surrogate(scorer, x, bank_temperature=1e-4), real, atol=2e-3)


def test_eot_is_skipped_for_a_score_without_random_draws(fitted_cobra, digits_split):
    x, y = digits_split.test[:10], digits_split.test_labels[:10]
    assert not score_depends_on_seed(fitted_cobra, x)  # cpu-small: views = 0, rotations
    result = attack_adaptive(fitted_cobra, x, y, 8 / 255, steps=2, variants=("eot", "similarity"))
    assert "eot" in result.skipped and "similarity" in result.variants


def test_eot_runs_with_random_views_and_restores_the_seed(fitted_cobra, digits_split, monkeypatch):
    monkeypatch.setattr(fitted_cobra.scorer, "num_views", 1)  # score with one random view per call
    x, y = digits_split.test[:10], digits_split.test_labels[:10]
    seed = fitted_cobra.scorer.seed
    assert score_depends_on_seed(fitted_cobra, x)
    before = fitted_cobra.score(x)
    result = attack_adaptive(fitted_cobra, x, y, 8 / 255, steps=2, variants=("eot",), eot_samples=2)
    assert "eot" in result.variants and (result.images - x).abs().max() <= 8 / 255 + 1e-6
    assert fitted_cobra.scorer.seed == seed and torch.equal(fitted_cobra.score(x), before)
    with reseeded(fitted_cobra.scorer, seed + 1):
        assert fitted_cobra.scorer.seed == seed + 1
    assert fitted_cobra.scorer.seed == seed


def test_adaptive_needs_a_shift_score(digits_split):
    knn = PixelKNN().fit(digits_split.train)
    x, y = digits_split.test[:6], digits_split.test_labels[:6]
    result = attack_adaptive(knn, x, y, 8 / 255, steps=1)
    assert torch.equal(result.images, x) and not result.variants and result.skipped


@pytest.mark.parametrize("bad", ["lse", "lse:0", "lse:x", "softmax"])
def test_bad_variants(bad):
    with pytest.raises(ConfigError):
        parse_variant(bad)
