"""kNN / PatchCore-style baseline on real data (scikit-learn digits, 0 = normal)."""

import json

import pytest
import torch

from robustad.attacks.base import AttackConfig
from robustad.errors import CheckpointError, ConfigError, DataError
from robustad.evaluation.metrics import auroc
from robustad.evaluation.robustness import evaluate_robustness
from robustad.methods.knn.config import KNNConfig
from robustad.methods.knn.detector import KNNDetector
from robustad.methods.patch_bank import greedy_coreset
from tests.conftest import TINY


@pytest.fixture(scope="module")
def knn(digits_split):
    return KNNDetector(backbone_overrides=TINY).fit(digits_split.train, progress=False)


def test_scores_are_finite_and_separate_digits(knn, digits_split):
    scores = knn.score(digits_split.test)
    assert scores.shape == (digits_split.test.shape[0],)
    assert torch.isfinite(scores).all() and (scores >= 0).all()
    assert auroc(scores, digits_split.test_labels) > 0.7  # seen 0.97 here


def test_backbone_is_trained_without_adversarial_examples(knn):
    assert knn.fit_info_["backbone"] == "trained"
    assert knn.fit_info_["backbone_adversarial"] is False
    assert knn.backbone_config_.model.width == TINY["model.width"]


def test_score_is_deterministic_and_batch_independent(knn, digits_split):
    x = digits_split.test[:10]
    a = knn.score(x)
    assert torch.equal(a, knn.score(x))
    assert torch.allclose(knn.score(x.flip(0)).flip(0), a, atol=1e-5)
    assert torch.allclose(knn.score(x[3:4]), a[3:4], atol=1e-5)


def test_score_is_differentiable(knn, digits_split):
    x = digits_split.test[:8].clone().requires_grad_(True)
    knn.score(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_coreset_keeps_the_requested_fraction_of_patches(knn):
    info = knn.fit_info_
    assert info["num_candidates"] == info["num_train"] * 16  # 8x8 input -> layer2's 4x4 grid
    assert info["num_bank"] == round(0.1 * info["num_candidates"])
    assert knn.scorer.bank.shape == (info["num_bank"], 2 * 4 + 4 * 4)  # layer2 + layer3 channels


def test_bank_size_caps_the_coreset(digits_split):
    det = KNNDetector(backbone_overrides=TINY, bank_size=50).fit(digits_split.train[:40], progress=False)
    assert det.scorer.bank.shape[0] == 50


@pytest.mark.parametrize("projection_dim", [0, 4])
def test_greedy_coreset_covers_better_than_a_random_subset(projection_dim):
    points = torch.randn(600, 8, generator=torch.Generator().manual_seed(0)) ** 3  # uneven density
    chosen = greedy_coreset(points, 30, projection_dim=projection_dim, seed=0)
    assert chosen.unique().numel() == 30

    def radius(idx):  # farthest any point lies from its nearest chosen point
        return torch.cdist(points, points[idx]).amin(dim=1).max()

    random = torch.randperm(600, generator=torch.Generator().manual_seed(1))[:30]
    assert radius(chosen) <= radius(random)
    assert torch.equal(chosen, greedy_coreset(points, 30, projection_dim=projection_dim, seed=0))


def test_chunked_search_matches_the_full_distance_matrix(knn, digits_split):
    scorer = knn.scorer
    with torch.no_grad():
        q = scorer.features(digits_split.test[:6]).flatten(0, 1)
        full = torch.cdist(q, scorer.bank).topk(3, dim=1, largest=False).indices
        old = scorer.chunk_size
        try:
            scorer.chunk_size = 7  # many blocks on both sides
            chunked = scorer.nearest(q, 3)
        finally:
            scorer.chunk_size = old
    assert torch.equal(chunked.sort(dim=1).values, full.sort(dim=1).values)


def test_more_neighbours_never_lower_the_score(knn, digits_split):
    x = digits_split.test[:10]
    one = knn.score(x)
    knn.scorer.k = 3
    try:
        three = knn.score(x)
    finally:
        knn.scorer.k = 1
    assert (three >= one - 1e-6).all() and (three > one).any()


def test_training_images_score_zero_in_image_mode(digits_split):
    det = KNNDetector(backbone_overrides=TINY, mode="image", coreset_fraction=1.0, score__holdout_fraction=0.0)
    det.fit(digits_split.train, progress=False)
    assert det.scorer.bank.shape[0] == digits_split.train.shape[0]
    train_scores = det.score(digits_split.train)
    test_scores = det.score(digits_split.test)
    assert train_scores.max() < 1e-4 * test_scores.median()
    assert auroc(test_scores, digits_split.test_labels) > 0.7  # seen 0.96 here


def test_a_fitted_cobra_can_serve_as_backbone(fitted_cobra, digits_split):
    det = KNNDetector(backbone=fitted_cobra, mode="image").fit(digits_split.train, progress=False)
    assert det.fit_info_["backbone"] == "given" and det.fit_info_["backbone_adversarial"] is True
    assert torch.isfinite(det.score(digits_split.test[:4])).all()
    with pytest.raises(DataError, match="set image_size"):
        KNNDetector(backbone=fitted_cobra).fit(torch.rand(10, 1, 12, 12), progress=False)
    with pytest.raises(ConfigError, match="fitted Cobra"):
        KNNDetector(backbone="resnet18")


def test_save_and_load_give_identical_scores(knn, digits_split, fitted_cobra, tmp_path):
    knn.save(tmp_path / "det")
    loaded = KNNDetector.load(tmp_path / "det")
    x = digits_split.test[:12]
    assert torch.equal(loaded.score(x), knn.score(x))
    assert loaded.threshold_ == pytest.approx(knn.threshold_)
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["method"] == "knn" and meta["backbone_config"]["adversarial"]["enabled"] is False
    fitted_cobra.save(tmp_path / "cobra")
    with pytest.raises(CheckpointError, match="not a 'knn' one"):
        KNNDetector.load(tmp_path / "cobra")


def test_config_round_trips_and_validates():
    config = KNNConfig().with_overrides(["mode=image", "k=3", "backbone_overrides.train.epochs=1", "layers=[layer3]"])
    assert config.backbone_overrides == {"train.epochs": 1} and config.layers == ["layer3"]
    assert KNNConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.backbone_config().train.epochs == 1 and config.backbone_config().adversarial.enabled is False
    assert KNNConfig.from_preset("digits-cpu").backbone_preset == "digits-cpu"
    for bad, match in [({"mode": "pixels"}, "mode"), ({"layers": ["layer9"]}, "layers"), ({"k": 0}, "k must"),
                       ({"coreset_fraction": 0.0}, "coreset_fraction"), ({"patch_pool": 2}, "patch_pool")]:
        with pytest.raises(ConfigError, match=match):
            KNNConfig().with_overrides(bad)
    with pytest.raises(ConfigError, match="unknown config key"):
        KNNDetector(backbone_overrides={"train.epoch": 1})


def test_pgd_does_not_raise_auroc(knn, digits_split):
    result = evaluate_robustness(knn, digits_split.test, digits_split.test_labels, AttackConfig(eps="8/255", steps=5))
    assert result.auroc_attack <= result.auroc_clean  # seen 0.97 -> 0.79 here


def test_candidates_are_capped_before_the_coreset(digits_split):
    from robustad.methods.knn.detector import KNNDetector

    det = KNNDetector(backbone_overrides={"model.width": 4, "model.projection_dim": 16, "train.epochs": 1,
                                          "train.steps_per_epoch": 1, "train.batch_size": 16},
                      max_candidates=300, coreset_fraction=0.5).fit(digits_split.train[:40], progress=False)
    assert det.fit_info_["num_candidates"] == 300 and det.fit_info_["num_bank"] == 150
    with pytest.raises(Exception, match="max_candidates"):
        KNNDetector(max_candidates=0)
