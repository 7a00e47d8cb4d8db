"""The reference detectors: raw-pixel kNN and image statistics, on real digits."""

import pytest
import torch

from robustad import ImageStats, PixelKNN, load_detector
from robustad.attacks.pgd import attack_score
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc

NO_HOLDOUT = {"score.holdout_fraction": 0.0}


def test_pixel_knn_is_the_distance_to_the_nearest_training_image(digits_split):
    train, x = digits_split.train, digits_split.test[:10]
    det = PixelKNN(overrides=NO_HOLDOUT).fit(train)
    brute = torch.cdist(x.flatten(1), train.flatten(1)).min(dim=1).values
    assert torch.allclose(det.score(x), brute, atol=1e-5)
    assert torch.allclose(det.score(train[:5]), torch.zeros(5), atol=1e-5)


def test_pixel_knn_options_downsample_and_k(digits_split):
    train, x = digits_split.train, digits_split.test[:6]
    pooled = torch.nn.functional.avg_pool2d
    det = PixelKNN(overrides={**NO_HOLDOUT, "downsample": 2, "k": 3, "chunk_size": 7}).fit(train)
    d = torch.cdist(pooled(x, 2).flatten(1), pooled(train, 2).flatten(1)).topk(3, largest=False).values.mean(1)
    assert torch.allclose(det.score(x), d, atol=1e-5)


def test_image_stats_scores_brightness_and_contrast(digits_split):
    det = ImageStats(overrides=NO_HOLDOUT).fit(digits_split.train)
    x = digits_split.train[:20]
    assert det.score(x).mean() < det.score((x * 0.5).clamp(0, 1)).mean()  # a dimmer image is unusual
    assert det.score(x).mean() < det.score(torch.full_like(x, 0.5)).mean()  # so is a flat one


@pytest.mark.parametrize("cls", [PixelKNN, ImageStats])
def test_references_detect_save_load_and_fall_under_attack(cls, digits_split, tmp_path):
    split = digits_split
    det = cls.from_preset("cpu-small").fit(split.train)
    clean = auroc(det.score(split.test), split.test_labels)
    assert clean > 0.6
    assert det.threshold_ == det.threshold_  # calibrated on held-out normals
    det.save(tmp_path / "d")
    loaded = load_detector(tmp_path / "d")
    assert type(loaded) is cls and torch.allclose(loaded.score(split.test), det.score(split.test))
    adv = attack_score(det, split.test, split.test_labels, 0.3, steps=20)
    assert auroc(det.score(adv), split.test_labels) < clean - 0.1  # the scores are differentiable and attackable


def test_reference_settings_are_checked():
    with pytest.raises(ConfigError, match="downsample"):
        PixelKNN(overrides={"downsample": 0})
    with pytest.raises(ConfigError, match="unknown config key"):
        PixelKNN(overrides={"train.epochs": 2})


def test_adaptive_attacks_cover_the_references(digits_split):
    from robustad.attacks.adaptive import attack_adaptive

    split = digits_split
    pixel = PixelKNN(overrides=NO_HOLDOUT).fit(split.train)
    result = attack_adaptive(pixel, split.test, split.test_labels, 0.2, steps=5)
    assert {"score", "knn-soft:0.01", "knn-soft:0.05"} <= set(result.variants)  # pixel kNN is a kNN score
    stats = ImageStats(overrides=NO_HOLDOUT).fit(split.train)
    result = attack_adaptive(stats, split.test, split.test_labels, 0.2, steps=5)
    assert set(result.variants) == {"score"} and "smooth by construction" in result.skipped["lse:0.02"]
