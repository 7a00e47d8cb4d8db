"""Attacks as objects (robustad.attacks.attack): one calling convention, the same images as the functions."""

import numpy as np
import pytest
import torch

from robustad.attacks.attack import APGD, ATTACKS, PGD, Adaptive, Attack, Square, Transfer, load_attacks
from robustad.attacks.autoattack import attack_apgd, attack_square
from robustad.attacks.base import AttackConfig, as_logits
from robustad.attacks.pgd import attack_pgd
from robustad.errors import ConfigError, InputError
from robustad.evaluation.metrics import auroc


@pytest.fixture(scope="module")
def batch(digits_split):
    return digits_split.test[:16], digits_split.test_labels[:16]


def test_every_kind_registers_itself():
    assert set(load_attacks()) == {"pgd", "apgd", "square", "adaptive", "transfer", "spsa"}
    assert all(issubclass(cls, Attack) and cls.kind == kind for kind, cls in ATTACKS.items())


@pytest.mark.parametrize("kind", ["pgd", "apgd", "square"])
def test_an_object_returns_what_its_function_returns(kind, fitted_cobra, batch):
    x, y = batch
    eps = 8 / 255
    if kind == "pgd":
        atk = PGD(fitted_cobra, eps=eps, steps=3, seed=1)
        expected = attack_pgd(as_logits(fitted_cobra), x, y, AttackConfig(eps=eps, steps=3, seed=1))
    elif kind == "apgd":
        atk = APGD(fitted_cobra, eps=eps, steps=3, seed=1)
        expected = attack_apgd(as_logits(fitted_cobra), x, y, eps, steps=3, seed=1)
    else:
        atk = Square(fitted_cobra, eps=eps, queries=5, seed=1)
        expected = attack_square(as_logits(fitted_cobra), x, y, eps, queries=5, seed=1)
    out = atk(x, y)
    assert torch.equal(out, expected)
    assert (out - x).abs().max() <= eps + 1e-6 and kind in repr(atk).lower()


def test_images_come_back_in_the_type_they_came_in(fitted_cobra, batch):
    x, y = batch
    atk = PGD(fitted_cobra, eps="8/255", steps=2)
    as_array = atk(x.numpy(), y.numpy())
    assert isinstance(as_array, np.ndarray) and as_array.dtype == np.float32 and as_array.shape == tuple(x.shape)
    as_uint8 = atk((x * 255).round().to(torch.uint8), y)
    assert as_uint8.dtype == torch.uint8
    moved = (as_uint8.float() - (x * 255).round()).abs()
    assert moved.max() <= 9 and moved.sum() > 0  # 8/255, rounded back to 8 bits


def test_the_attack_lowers_the_auroc_it_is_built_against(fitted_cobra, batch):
    x, y = batch
    clean = auroc(fitted_cobra.score(x), y)
    attacked = auroc(fitted_cobra.score(PGD(fitted_cobra, eps=16 / 255, steps=10)(x, y)), y)
    assert attacked < clean - 0.1


def test_adaptive_keeps_its_variants_and_transfer_crafts_on_the_surrogate(fitted_cobra, batch):
    x, y = batch
    atk = Adaptive(fitted_cobra, eps=8 / 255, variants=("similarity", "shift"), steps=2)
    out = atk(x, y)
    assert set(atk.result_.variants) == {"similarity", "shift"} and torch.equal(out, atk.result_.images)
    moved = Transfer(None, surrogate=fitted_cobra, eps=8 / 255, steps=2)(x, y)
    assert (moved - x).abs().max() <= 8 / 255 + 1e-6 and not torch.equal(moved, x)


@pytest.mark.parametrize("build, message", [
    (lambda d: PGD(d, eps=2.0), "eps"),
    (lambda d: PGD(d, target="sideways"), "target"),
    (lambda d: APGD(d, steps=0), "steps"),
    (lambda d: Square(d, queries=-1), "queries"),
    (lambda d: PGD(d, batch_size=0), "batch_size"),
])
def test_bad_settings_are_refused_when_built(build, message, fitted_cobra):
    with pytest.raises(ConfigError, match=message):
        build(fitted_cobra)


def test_bad_inputs_are_refused_when_called(fitted_cobra, batch):
    x, y = batch
    atk = PGD(fitted_cobra, steps=1)
    with pytest.raises(InputError, match="labels"):
        atk(x, y[:3])
    with pytest.raises(InputError, match="in \\[0, 1\\]"):
        atk(x * 3, y)
    with pytest.raises(InputError, match="N,C,H,W"):
        atk(x[0], y[:1])


def test_a_new_attack_class_is_all_the_suite_needs(fitted_cobra, digits_split):
    """Adding an attack: one class, registered by its kind; the suite runs it and counts it in the worst case."""
    from robustad.evaluation.suite import AttackSpec, SuiteConfig, run_suite

    class SignNoise(Attack, kind="test-sign-noise"):
        """Every pixel moved by +-eps at random: a weak attack, enough to show the wiring."""

        def __init__(self, detector, eps=8 / 255, target="both", seed=0, batch_size=256):
            super().__init__(detector, eps, target, seed, batch_size)

        def perturb(self, images, labels):
            g = torch.Generator().manual_seed(self.seed)
            signs = torch.randint(0, 2, images.shape, generator=g).float() * 2 - 1
            return (images + self.eps * signs).clamp(0, 1)

    try:
        config = SuiteConfig(name="t", attacks=(AttackSpec("test-sign-noise"), AttackSpec("pgd", steps=2)))
        x, y = digits_split.test[:30], digits_split.test_labels[:30]
        result = run_suite({"cobra": fitted_cobra}, x, y, config)
        noisy = result.auroc("cobra", "test-sign-noise")
        assert 0 <= noisy <= 1 and result.auroc("cobra", "worst-case") <= min(noisy, result.auroc("cobra", "pgd-2x1"))
    finally:
        ATTACKS.pop("test-sign-noise", None)
