"""Every attack of the suite: it must hurt the AUROC it attacks, stay in its eps ball, and keep the worst case."""

import pytest
import torch

from robustad import Cobra
from robustad.attacks.adaptive import attack_adaptive
from robustad.attacks.autoattack import attack_apgd, attack_autoattack, attack_square
from robustad.attacks.base import AttackConfig, as_logits, attack_gain, attacked_mask
from robustad.attacks.pgd import attack_pgd, attack_score, pgd_maximize, step_sizes
from robustad.attacks.transfer import attack_transfer
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc

EPS = 8 / 255
# the tiny settings of tests/conftest.py (fitted_cobra), without adversarial training
TINY_BASELINE = {
    "model.width": 4, "model.projection_dim": 16, "train.epochs": 2, "train.batch_size": 16,
    "train.steps_per_epoch": 3, "train.warmup_epochs": 0, "score.batch_size": 64,
    "adversarial.enabled": False, "train.seed": 1,
}


@pytest.fixture(scope="module")
def baseline(digits_split):
    """The same tiny network trained without adversarial examples, on another seed: a surrogate."""
    torch.manual_seed(1)
    return Cobra.from_preset("cpu-small", overrides=TINY_BASELINE).fit(digits_split.train, progress=False)


def _run(kind, det, surrogate, x, y, eps=EPS, target="both"):
    if kind == "pgd-cosine":
        return attack_pgd(as_logits(det), x, y, AttackConfig(eps=eps, steps=10, schedule="cosine", target=target))
    if kind == "pgd-step":
        return attack_pgd(as_logits(det), x, y, AttackConfig(eps=eps, steps=10, schedule="step", target=target))
    if kind == "apgd":
        return attack_apgd(as_logits(det), x, y, eps, target, steps=10)
    if kind == "square":
        return attack_square(as_logits(det), x, y, eps, target, queries=100)
    if kind == "adaptive":
        return attack_adaptive(det, x, y, eps, target, steps=10).images
    if kind == "transfer":
        return attack_transfer(surrogate, x, y, eps, target, steps=10)
    raise AssertionError(kind)


def _in_ball(x_adv, x, eps):
    return (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("kind", ["pgd-cosine", "pgd-step", "apgd", "square", "adaptive", "transfer"])
def test_each_attack_lowers_auroc_and_stays_in_budget(kind, fitted_cobra, baseline, digits_split):
    x, y = digits_split.test, digits_split.test_labels
    # transfer: crafted on the non-robust twin, aimed at the detector (a weaker attack: larger eps)
    target_det = fitted_cobra
    eps = 32 / 255 if kind == "transfer" else EPS
    x_adv = _run(kind, target_det, baseline, x, y, eps)
    assert _in_ball(x_adv, x, eps)
    clean, attacked = auroc(target_det.score(x), y), auroc(target_det.score(x_adv), y)
    assert attacked < clean - 0.05, (kind, clean, attacked)
    # judged on the real score, no image ends up better for the defender than it started
    # (transfer is judged on its surrogate, so it may help some images)
    assert kind == "transfer" or (attack_gain(target_det.score(x_adv), y) >= attack_gain(target_det.score(x), y) - 1e-5).all()


@pytest.mark.parametrize("kind", ["apgd", "square", "adaptive"])
@pytest.mark.parametrize("target", ["normal", "anomaly"])
def test_one_sided_targets_move_only_their_images(kind, target, fitted_cobra, digits_split):
    x, y = digits_split.test[:30], digits_split.test_labels[:30]
    x_adv = _run(kind, fitted_cobra, None, x, y, target=target)
    moved = (x_adv - x).flatten(1).abs().amax(1) > 0
    assert not moved[~attacked_mask(y, target)].any()
    assert moved[attacked_mask(y, target)].any()


def test_restarts_keep_the_worst_case_per_image(fitted_cobra, digits_split):
    x, y = digits_split.test[:30], digits_split.test_labels[:30]

    def gain(a, labels):
        return attack_gain(fitted_cobra.score(a), labels)

    one = pgd_maximize(gain, x, y, EPS, 3, restarts=1, seed=3)
    three = pgd_maximize(gain, x, y, EPS, 3, restarts=3, seed=3)
    assert (gain(three, y) >= gain(one, y) - 1e-5).all()


def test_autoattack_is_the_worst_of_apgd_and_square(fitted_cobra, digits_split):
    x, y = digits_split.test[:30], digits_split.test_labels[:30]
    model = as_logits(fitted_cobra)
    both = attack_autoattack(model, x, y, EPS, apgd_steps=5, square_queries=30)
    a = attack_apgd(model, x, y, EPS, steps=5)
    s = attack_square(model, x, y, EPS, queries=30)
    g = lambda z: attack_gain(fitted_cobra.score(z), y)  # noqa: E731
    assert (g(both) >= torch.maximum(g(a), g(s)) - 1e-5).all()


def test_library_attacks_leave_rng_detector_and_mode_alone(fitted_cobra, digits_split):
    x, y = digits_split.test[:20], digits_split.test_labels[:20]
    before = fitted_cobra.score(x)
    state = torch.random.get_rng_state()
    attack_apgd(as_logits(fitted_cobra), x, y, EPS, steps=2)
    attack_square(as_logits(fitted_cobra), x, y, EPS, queries=5)
    attack_score(fitted_cobra, x, y, EPS, steps=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not fitted_cobra.scorer.training
    assert torch.equal(fitted_cobra.score(x), before)


def test_step_size_schedules():
    assert step_sizes("constant", 10, 0.1) == pytest.approx([0.025] * 10)
    cosine = step_sizes("cosine", 20, 0.1)
    assert cosine[0] == pytest.approx(0.025) and all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] > 0
    step = step_sizes("step", 8, 0.1, step_size=0.04)
    assert step == pytest.approx([0.04] * 4 + [0.01] * 2 + [0.0025] * 2)
    with pytest.raises(ConfigError):
        step_sizes("linear", 10, 0.1)
    with pytest.raises(ConfigError):
        AttackConfig(schedule="linear").validate()


def test_pgd_on_a_score_without_gradients_does_not_crash():
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1] * 3)
    out = pgd_maximize(lambda a, labels: attack_gain(a.detach().mean((1, 2, 3)), labels), x, y, EPS, 2)
    assert _in_ball(out, x, EPS)
