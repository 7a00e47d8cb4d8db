"""Gradient-masking sanity checks: quiet on an honest detector, loud on a masked or random one."""

import pytest
import torch

from robustad.attacks.canaries import GradientMasked
from robustad.errors import ConfigError
from robustad.evaluation.sanity import SanityConfig, run_sanity

FAST = SanityConfig(steps=5, more_steps=20, restarts=2, square_queries=50)


class NoisyScore:
    """A detector whose score changes from call to call."""

    def __init__(self, inner, sigma=0.5):
        self.inner, self.sigma = inner, sigma
        self.score_scale_ = inner.score_scale_

    def score(self, x):
        return self.inner.score(x) + self.sigma * self.inner.score_scale_ * torch.randn(x.shape[0])


class NaNGradient:
    """Scores are fine, but their input gradient is NaN (sqrt at 0 times 0)."""

    def __init__(self, inner):
        self.inner = inner

    def score(self, x):
        return self.inner.score(x) + 0 * (x - x).sqrt().flatten(1).sum(1)


def test_checks_pass_on_an_honest_detector(fitted_cobra, digits_split):
    report = run_sanity(fitted_cobra, digits_split.test, digits_split.test_labels, FAST)
    assert report.passed, report.lines()
    names = [c.name for c in report.checks]
    assert names == ["gradients", "deterministic", "eps_growth", "more_steps", "more_restarts", "black_box"]
    curve = report.check("eps_growth").figures["auroc_by_eps_x255"]
    assert curve[255.0] <= 0.05 and list(curve) == [8.0, 64.0, 255.0]
    assert report.to_dict()["passed"] is True


def test_checks_flag_a_gradient_masked_detector(fitted_cobra, digits_split):
    report = run_sanity(GradientMasked(fitted_cobra), digits_split.test, digits_split.test_labels, FAST)
    assert not report.passed
    assert {"gradients", "black_box"} <= set(report.failed()), report.lines()
    assert report.check("gradients").figures["zero_gradient_fraction"] == 1.0
    bb = report.check("black_box").figures
    assert bb["square_50"] < bb["best_white_box"] - FAST.tolerance  # Square beats the stalled PGD
    assert report.check("deterministic").passed  # masking, not randomness


def test_checks_flag_a_random_score(fitted_cobra, digits_split):
    torch.manual_seed(0)
    x, y = digits_split.test[:20], digits_split.test_labels[:20]
    report = run_sanity(NoisyScore(fitted_cobra), x, y, SanityConfig(steps=2, more_steps=3, restarts=2, square_queries=5))
    assert "deterministic" in report.failed()


def test_checks_flag_nan_gradients(fitted_cobra, digits_split):
    from robustad.evaluation.sanity import check_gradients

    check = check_gradients(NaNGradient(fitted_cobra), digits_split.test[:10], SanityConfig())
    assert not check.passed and check.figures["nonfinite"] == 10


@pytest.mark.parametrize("kwargs", [{"large_eps": ("4/255",)}, {"more_steps": 5, "steps": 5}, {"restarts": 1},
                                    {"target": "sideways"}, {"large_eps": (1.0, "64/255")}])
def test_bad_sanity_settings(kwargs):
    with pytest.raises(ConfigError):
        SanityConfig(**kwargs).validate()
