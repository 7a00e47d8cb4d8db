"""SPSA (robustad.attacks.spsa): the gradient-free attack, found by the suite without being imported."""

import pytest
import torch

from robustad.attacks.spsa import SPSA
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc
from robustad.evaluation.suite import ATTACKS, WORST, AttackSpec, SuiteConfig, run_suite


@pytest.fixture(scope="module")
def batch(digits_split):
    return digits_split.test[:24], digits_split.test_labels[:24]


def test_spsa_stays_in_budget_is_seeded_and_lowers_the_auroc(fitted_cobra, batch):
    x, y = batch
    eps = 16 / 255
    atk = SPSA(fitted_cobra, eps=eps, steps=15, samples=32, lr=0.02, seed=3)
    out = atk(x, y)
    assert (out - x).abs().max() <= eps + 1e-6 and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, SPSA(fitted_cobra, eps=eps, steps=15, samples=32, lr=0.02, seed=3)(x, y))
    clean, attacked = auroc(fitted_cobra.score(x), y), auroc(fitted_cobra.score(out), y)
    assert attacked < clean - 0.05, (clean, attacked)
    # per image, never better for the detector than the clean image (the clean image is a candidate)
    gain = torch.where(y == 0, 1.0, -1.0)
    assert (gain * (fitted_cobra.score(out) - fitted_cobra.score(x)) >= -1e-5).all()


def test_spsa_moves_only_the_targets_images(fitted_cobra, batch):
    x, y = batch
    out = SPSA(fitted_cobra, eps=8 / 255, steps=3, samples=8, target="normal")(x, y)
    assert torch.equal(out[y == 1], x[y == 1]) and not torch.equal(out[y == 0], x[y == 0])


def test_the_suite_finds_spsa_by_its_kind_and_counts_it_in_the_worst_case(fitted_cobra, batch):
    assert ATTACKS["spsa"] is SPSA and AttackSpec("spsa", steps=2).validate().label() == "spsa-2x128"
    x, y = batch
    config = SuiteConfig(eps=("8/255",), attacks=(AttackSpec("spsa", steps=3),))
    result = run_suite({"cobra": fitted_cobra}, x, y, config)
    spsa = result.auroc("cobra", "spsa-3x128")
    assert spsa <= result.auroc("cobra", "clean") and result.auroc("cobra", WORST) <= spsa


@pytest.mark.parametrize("kwargs, match", [({"steps": 0}, "steps"), ({"samples": 0}, "samples"),
                                           ({"delta": 0}, "delta"), ({"lr": 2.0}, "lr")])
def test_bad_settings_are_refused(fitted_cobra, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SPSA(fitted_cobra, **kwargs)
