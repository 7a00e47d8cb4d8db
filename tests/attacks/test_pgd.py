"""PGD against the anomaly score: it must hurt the AUROC it attacks and respect its budget."""

import pytest
import torch

from robustad.attacks.base import AttackConfig, ScoreAsLogits, attacked_mask
from robustad.attacks.pgd import attack_pgd
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc
from robustad.evaluation.robustness import evaluate_robustness, score_as_logits


def test_pgd_lowers_auroc_and_stays_in_budget(fitted_cobra, digits_split):
    x, y = digits_split.test, digits_split.test_labels
    config = AttackConfig(eps="16/255", steps=10, target="both")
    x_adv = attack_pgd(score_as_logits(fitted_cobra), x, y, config)
    assert (x_adv - x).abs().max() <= 16 / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    clean, attacked = auroc(fitted_cobra.score(x), y), auroc(fitted_cobra.score(x_adv), y)
    assert attacked < clean - 0.1


@pytest.mark.parametrize("target", ["normal", "anomaly"])
def test_one_sided_targets_move_only_their_images_in_their_direction(fitted_cobra, digits_split, target):
    x, y = digits_split.test, digits_split.test_labels
    x_adv = attack_pgd(score_as_logits(fitted_cobra), x, y, AttackConfig(eps="8/255", steps=5, target=target))
    moved = (x_adv - x).flatten(1).abs().amax(1) > 0
    assert torch.equal(moved, attacked_mask(y, target))
    delta = fitted_cobra.score(x_adv) - fitted_cobra.score(x)
    if target == "normal":
        assert delta[y == 0].mean() > 0  # normal images look more anomalous
    else:
        assert delta[y == 1].mean() < 0  # anomalies look more normal


def test_restarts_never_do_worse_than_one_run(fitted_cobra, digits_split):
    x, y = digits_split.test[:30], digits_split.test_labels[:30]
    model = score_as_logits(fitted_cobra)
    one = attack_pgd(model, x, y, AttackConfig(eps="8/255", steps=3, restarts=1, seed=5))
    three = attack_pgd(model, x, y, AttackConfig(eps="8/255", steps=3, restarts=3, seed=5))
    gain = lambda a: torch.where(y == 0, fitted_cobra.score(a), -fitted_cobra.score(a))  # noqa: E731
    assert (gain(three) >= gain(one) - 1e-5).all()


def test_score_as_logits_orders_classes_by_score():
    model = ScoreAsLogits(lambda x: x.flatten(1).sum(1), torch.nn.Linear(1, 1), center=1.0, scale=2.0)
    logits = model(torch.ones(2, 1, 2, 2) * torch.tensor([0.0, 1.0]).view(2, 1, 1, 1))
    # z = (score - 1) / 2 = -0.5 and 1.5, then sign(z) * log(1 + |z|)
    assert torch.allclose(logits, torch.tensor([[0.0, -torch.log1p(torch.tensor(0.5))], [0.0, torch.log1p(torch.tensor(1.5))]]))


class _LinearScore(torch.nn.Module):
    """score = <w, x> + offset: the attack's best move is known (eps * sign(w) per pixel)."""

    def __init__(self, offset: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, 16).view(1, 1, 4, 4), requires_grad=False)
        self.offset = offset
        self.threshold_ = None

    def score(self, x):
        return (x * self.w).flatten(1).sum(1) + self.offset

    scorer = property(lambda self: self)


@pytest.mark.parametrize("kind", ["pgd", "apgd"])
@pytest.mark.parametrize("offset", [0.0, 25.0, 400.0])
def test_far_off_images_are_still_attacked(kind, offset):
    """An anomaly scored far above the normal range must still be pushed down: on raw logits,
    float32 cross-entropy has no gradient there and torchattacks would leave it where it was."""
    from robustad.attacks.autoattack import attack_apgd

    det = _LinearScore(offset)
    x, y = torch.full((4, 1, 4, 4), 0.5), torch.ones(4, dtype=torch.long)
    eps = 8 / 255
    if kind == "pgd":
        x_adv = attack_pgd(score_as_logits(det), x, y, AttackConfig(eps=eps, steps=10, target="anomaly"))
    else:
        x_adv = attack_apgd(score_as_logits(det), x, y, eps, "anomaly", steps=10)
    drop = det.score(x) - det.score(x_adv)
    best = eps * det.w.abs().sum()  # every pixel moved by eps against sign(w)
    assert (drop > 0.9 * best).all(), (drop, best)


def test_evaluate_robustness_reports_the_attack(fitted_cobra, digits_split):
    result = evaluate_robustness(fitted_cobra, digits_split.test, digits_split.test_labels,
                                 AttackConfig(eps="4/255", steps=2, target="both"))
    summary = result.summary()
    assert summary["attack"]["eps"] == pytest.approx(4 / 255) and summary["attack"]["steps"] == 2
    assert 0 <= summary["auroc_attack"] <= 1 and summary["num_test"] == 60


@pytest.mark.parametrize("kwargs", [{"eps": 2.0}, {"eps": "-1/255"}, {"target": "sideways"}, {"steps": 0}])
def test_bad_attack_settings(kwargs):
    with pytest.raises(ConfigError):
        AttackConfig(**kwargs).validate()


def test_attacking_leaves_the_detector_unchanged(fitted_cobra, digits_split):
    x, y = digits_split.test[:20], digits_split.test_labels[:20]
    before = fitted_cobra.score(x)
    attack_pgd(score_as_logits(fitted_cobra), x, y, AttackConfig(eps="8/255", steps=2))
    assert not fitted_cobra.scorer.training
    assert torch.equal(fitted_cobra.score(x), before)
