"""COBRA-patch on small real data: the semi-synthetic texture crops at 32 px."""

import math

import pytest
import torch

from robustad import PatchCobra, load_detector
from robustad.attacks.adaptive import attack_adaptive, is_knn_score_detector
from robustad.attacks.pgd import attack_score
from robustad.data.registry import load_dataset
from robustad.errors import CheckpointError, ConfigError
from robustad.evaluation.metrics import auroc

TINY_PATCH = {"train.epochs": 2, "train.steps_per_epoch": 3, "train.batch_size": 8, "adversarial.steps": 1,
              "score.batch_size": 32, "score.bank_size": 400}


@pytest.fixture(scope="module")
def brick():
    return load_dataset("textures", category="brick", image_size=32, max_train=40, max_test=24, seed=0)


@pytest.fixture(scope="module")
def fitted(brick):
    return PatchCobra.from_preset("textures-cpu", overrides={**TINY_PATCH, "image_size": None}).fit(
        brick.train, progress=False)


def test_fit_scores_maps_and_detects_the_defects(fitted, brick):
    s = fitted.score(brick.test)
    assert s.shape == (24,) and torch.isfinite(s).all()
    assert auroc(s, brick.test_labels) > 0.75  # ImageNet features see brick defects from the start
    maps = fitted.anomaly_map(brick.test[:4])
    assert maps.shape == (4, 1, 32, 32)
    info = fitted.fit_info_
    assert info["num_bank"] <= 400 and len(info["history"]) == 2 and math.isfinite(fitted.threshold_)
    assert {"anchor", "positive", "opposite"} <= set(info["history"][-1])


def test_scores_are_deterministic_and_batch_independent(fitted, brick):
    x = brick.test[:6]
    whole = fitted.score(x)
    assert torch.equal(whole, fitted.score(x))
    assert torch.allclose(torch.cat([fitted.score(x[i : i + 1]) for i in range(6)]), whole, atol=1e-5)


def test_the_largest_patch_distance_is_the_score_and_the_map_peaks_on_the_defect(fitted, brick):
    x = brick.test[brick.test_labels == 1][:4]
    scorer = fitted.scorer
    distances = scorer.patch_distances(scorer.features(x))
    assert torch.allclose(distances.amax(dim=1), fitted.score(x), atol=1e-5)


def test_save_load_round_trip_without_the_pretrained_weights(fitted, brick, tmp_path):
    fitted.save(tmp_path / "d")
    loaded = load_detector(tmp_path / "d")
    assert type(loaded) is PatchCobra
    assert torch.allclose(loaded.score(brick.test), fitted.score(brick.test), atol=1e-6)
    assert loaded.threshold_ == fitted.threshold_


def test_an_interrupted_training_resumes_to_the_same_detector(brick, tmp_path):
    import time

    from robustad.errors import TrainingPaused
    from robustad.methods.training import training_deadline

    overrides = {**TINY_PATCH, "image_size": None}
    whole = PatchCobra.from_preset("textures-cpu", overrides=overrides).fit(brick.train, progress=False)
    with training_deadline(time.time()), pytest.raises(TrainingPaused):  # stops after its first epoch
        PatchCobra.from_preset("textures-cpu", overrides=overrides).fit(brick.train, run_dir=tmp_path, progress=False)
    resumed = PatchCobra.from_preset("textures-cpu", overrides=overrides).fit(brick.train, run_dir=tmp_path,
                                                                              progress=False)
    assert torch.allclose(resumed.score(brick.test), whole.score(brick.test), atol=1e-5)
    # a checkpoint of another config is refused, not mixed in
    with pytest.raises(CheckpointError, match="another training run"):
        PatchCobra.from_preset("textures-cpu", overrides={**overrides, "loss.margin": 2.0}).fit(
            brick.train, run_dir=tmp_path, progress=False)


def test_attacks_move_the_score_and_the_knn_adaptive_attack_covers_it(fitted, brick):
    assert is_knn_score_detector(fitted)
    y = brick.test_labels
    clean = auroc(fitted.score(brick.test), y)
    adv = attack_score(fitted, brick.test, y, 32 / 255, steps=10)
    assert auroc(fitted.score(adv), y) < clean - 0.2
    result = attack_adaptive(fitted, brick.test, y, 32 / 255, steps=5)
    assert "score" in result.variants and any(v.startswith("knn-soft") for v in result.variants)
    assert auroc(fitted.score(result.images), y) <= auroc(fitted.score(result.variants["score"]), y) + 1e-9


def test_the_mean_aggregate_and_no_adversaries_are_options(brick):
    det = PatchCobra(overrides={**TINY_PATCH, "score.aggregate": "mean", "adversarial.enabled": False,
                                "backbone.pretrained": False}).fit(brick.train, progress=False)
    x = brick.test[:5]
    s = det.scorer
    assert torch.allclose(s.patch_distances(s.features(x)).mean(dim=1), det.score(x), atol=1e-5)
    assert det.fit_info_["history"][-1]["eps"] == 0.0


@pytest.mark.parametrize("key,value,match", [
    ("backbone.taps", [4, 2], "taps"), ("backbone.taps", [16], "taps"), ("backbone.patch_pool", 2, "patch_pool"),
    ("loss.margin", -1, "margin"), ("adversarial.eps", "300/255", "outside"), ("adversarial.ramp", 2, "ramp"),
    ("defects.shapes", ["star"], "defects.shapes"), ("score.aggregate", "median", "aggregate"),
    ("score.coreset_fraction", 0, "coreset_fraction"), ("loss.temperature", 0.5, "unknown config key"),
])
def test_bad_settings_fail_before_any_work(key, value, match):
    with pytest.raises(ConfigError, match=match):
        PatchCobra(overrides={key: value})
