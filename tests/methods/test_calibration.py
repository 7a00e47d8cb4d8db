"""The threshold's false-positive rate comes with the interval its hold-out set can vouch for."""

import torch

from robustad import PixelKNN, load_detector
from robustad.methods.checkpoint import calibration_summary, fpr_interval


def test_interval_narrows_with_more_held_out_images_and_covers_the_target():
    wide = fpr_interval(7, 0)
    narrow = fpr_interval(1000, 50)
    assert wide[1] > 0.25  # 7 held-out images cannot vouch for a 5% rate
    assert narrow[0] < 0.05 < narrow[1] and narrow[1] - narrow[0] < 0.04
    assert fpr_interval(0, 0) == (0.0, 1.0)


def test_interval_matches_simulated_false_positive_rates():
    """Draw many hold-out sets from one normal distribution; the 90% interval holds ~90% of the time."""
    g = torch.Generator().manual_seed(0)
    hits, trials = 0, 400
    for _ in range(trials):
        holdout = torch.randn(40, generator=g).double()
        t = float(torch.quantile(holdout, 0.95))
        true_fpr = float(0.5 * torch.erfc(torch.tensor(t) / 2**0.5))
        lo, hi = fpr_interval(40, int((holdout > t).sum()))
        hits += lo <= true_fpr <= hi
    assert 0.83 < hits / trials < 0.97


def test_a_small_hold_out_set_is_reported_and_kept(digits_split, tmp_path):
    det = PixelKNN(overrides={"score.holdout_fraction": 0.05}).fit(digits_split.train)
    assert det.calibration_["num_holdout"] == round(0.05 * len(digits_split.train)) and det.calibration_["too_few"]
    assert "too few held-out images for a 5% target" in calibration_summary(det)
    det.save(tmp_path / "d")
    assert load_detector(tmp_path / "d").calibration_ == det.calibration_  # JSON keeps floats exactly
    bigger = PixelKNN(overrides={"score.holdout_fraction": 0.5}).fit(digits_split.train)
    assert bigger.calibration_["num_holdout"] > 50
    assert "too few" not in calibration_summary(bigger)
