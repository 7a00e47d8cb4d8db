"""The COBRA + raw-pixel kNN ensemble: standardised members, one threshold, saved as folders."""

import json

import pytest
import torch

from robustad import Ensemble, PixelKNN, load_detector
from robustad.attacks.adaptive import attack_adaptive
from robustad.errors import CheckpointError, ConfigError
from robustad.evaluation.metrics import auroc

from tests.conftest import TINY


@pytest.fixture(scope="module")
def ensemble(digits_split):
    return Ensemble.from_preset("cpu-small", overrides={**TINY, "score.holdout_fraction": 0.2}).fit(
        digits_split.train, progress=False)


def test_the_score_is_the_sum_of_standardised_member_scores(ensemble, digits_split):
    x = digits_split.test[:10]
    cobra, pixel = ensemble.members_
    expected = sum((m.score(x) - m.score_center_) / m.score_scale_ for m in (cobra, pixel))
    assert torch.allclose(ensemble.score(x), expected, atol=1e-5)
    assert [m.name for m in ensemble.members_] == ["cobra", "pixel-knn"]
    # every member held out the same images: the pixel member alone, fitted the same way, matches
    alone = PixelKNN.from_preset("cpu-small", overrides={"score.holdout_fraction": 0.2}).fit(digits_split.train)
    assert alone.score_center_ == pytest.approx(pixel.score_center_)
    assert auroc(ensemble.score(digits_split.test), digits_split.test_labels) > 0.8


def test_save_load_checks_its_members(ensemble, digits_split, tmp_path):
    ensemble.save(tmp_path / "e")
    loaded = load_detector(tmp_path / "e")
    assert type(loaded) is Ensemble
    assert torch.allclose(loaded.score(digits_split.test), ensemble.score(digits_split.test), atol=1e-6)
    # a member swapped for another detector's is refused
    other = PixelKNN.from_preset("cpu-small", overrides={"score.holdout_fraction": 0.5}).fit(digits_split.train)
    other.save(tmp_path / "e" / "members" / "1")
    with pytest.raises(CheckpointError, match="not the member this ensemble was saved with"):
        load_detector(tmp_path / "e")


def test_the_adaptive_attack_runs_each_member_and_the_smoothed_sum(ensemble, digits_split):
    result = attack_adaptive(ensemble, digits_split.test, digits_split.test_labels, 0.1, steps=3)
    assert {"score", "member:0", "member:1", "lse:0.02", "similarity", "shift"} <= set(result.variants)
    y = digits_split.test_labels
    worst = auroc(ensemble.score(result.images), y)
    assert all(worst <= auroc(ensemble.score(v), y) + 1e-9 for v in result.variants.values())


def test_settings_go_to_the_members_that_have_them():
    det = Ensemble.from_preset("mnist-cpu", overrides={"train.epochs": 1, "downsample": 2, "train.seed": 4})
    cobra, pixel = det.members_
    assert cobra.config.train.epochs == 1 and cobra.config.train.seed == 4
    assert pixel.config.downsample == 2 and pixel.config.seed == 4
    assert json.loads(json.dumps(det.config.to_dict()))["overrides"] == {"train.epochs": 1, "downsample": 2}
    with pytest.raises(ConfigError):
        Ensemble(overrides={"members": ["cobra"]})
    with pytest.raises(ConfigError):
        Ensemble(overrides={"model.width": 0})  # a member's bad setting fails at once
