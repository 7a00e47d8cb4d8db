"""Deep SVDD baseline on real data (scikit-learn digits, 0 = normal): fit, score, save/load, attacks."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from robustad.attacks.base import AttackConfig
from robustad.errors import CheckpointError, ConfigError
from robustad.evaluation.metrics import auroc
from robustad.evaluation.robustness import evaluate_robustness
from robustad.methods.deep_svdd.detector import CENTER_EPS, DeepSVDD, DeepSVDDConfig
from robustad.methods.training import CHECKPOINT_NAME

SMALL = {
    "model.width": 4,
    "model.rep_dim": 16,
    "train.epochs": 30,
    "train.batch_size": 16,
    "train.steps_per_epoch": 3,
    "train.warmup_epochs": 0,
}


@pytest.fixture(scope="module")
def svdd(digits_split):
    return DeepSVDD(overrides=SMALL).fit(digits_split.train, progress=False)


def test_scores_are_finite_and_separate_digits(svdd, digits_split):
    scores = svdd.score(digits_split.test)
    assert scores.shape == (digits_split.test.shape[0],)
    assert torch.isfinite(scores).all() and (scores >= 0).all()
    # 90 training steps of a width-4 network: seen 0.83 here (0.72-0.83 over train seeds 0-3)
    assert auroc(scores, digits_split.test_labels) > 0.65


def test_score_is_deterministic_and_batch_independent(svdd, digits_split):
    x = digits_split.test[:10]
    a = svdd.score(x)
    assert torch.equal(a, svdd.score(x))
    assert torch.allclose(svdd.score(x.flip(0)).flip(0), a, atol=1e-5)
    assert torch.allclose(svdd.score(x[3:4]), a[3:4], atol=1e-5)


def test_score_is_differentiable(svdd, digits_split):
    x = digits_split.test[:8].clone().requires_grad_(True)
    svdd.score(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_no_learnable_constant_can_collapse_the_sphere(svdd):
    center = svdd.scorer.center
    assert (center.abs() >= CENTER_EPS - 1e-7).all()
    for m in svdd.net.modules():
        if isinstance(m, nn.Linear):
            assert m.bias is None
        if isinstance(m, nn.BatchNorm1d):
            assert not m.affine
        if isinstance(m, nn.BatchNorm2d):  # shifts frozen at their initial zero
            assert not m.bias.requires_grad and torch.equal(m.bias, torch.zeros_like(m.bias))
    # training did not map every image to the centre
    assert svdd.score(torch.rand(4, 1, 8, 8)).min() > 1e-3


def test_threshold_is_calibrated_on_held_out_normals(svdd, digits_split):
    assert svdd.fit_info_["num_holdout"] > 0 and np.isfinite(svdd.threshold_)
    assert svdd.score_scale_ > 0
    pred = svdd.predict(digits_split.test)
    assert torch.equal(pred, (svdd.score(digits_split.test) > svdd.threshold_).long())


def test_save_and_load_give_identical_scores(svdd, digits_split, tmp_path):
    svdd.save(tmp_path / "det")
    loaded = DeepSVDD.load(tmp_path / "det")
    x = digits_split.test[:12]
    assert torch.equal(loaded.score(x), svdd.score(x))
    assert loaded.threshold_ == pytest.approx(svdd.threshold_)
    assert loaded.score_center_ == pytest.approx(svdd.score_center_)
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["method"] == "deep-svdd" and meta["kind"] == "robustad-detector"
    assert meta["config"]["model"]["rep_dim"] == 16


def test_load_refuses_a_cobra_checkpoint_and_a_mismatched_config(svdd, fitted_cobra, tmp_path, reseal):
    fitted_cobra.save(tmp_path / "cobra")
    with pytest.raises(CheckpointError, match="holds a 'cobra' checkpoint, not a 'deep-svdd' one"):
        DeepSVDD.load(tmp_path / "cobra")
    svdd.save(tmp_path / "svdd")
    meta_path = tmp_path / "svdd" / "detector.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["model"]["width"] = 8
    reseal(tmp_path / "svdd", meta)
    with pytest.raises(CheckpointError, match="does not match the config"):
        DeepSVDD.load(tmp_path / "svdd")


def test_config_round_trips_and_takes_dotted_overrides():
    config = DeepSVDDConfig().with_overrides(["train.epochs=3", "model.rep_dim=32", "evaluation.eps=4/255"])
    again = DeepSVDDConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.train.epochs == 3 and again.evaluation.eps == pytest.approx(4 / 255)
    assert DeepSVDDConfig.from_dict({"train": {"epochs": 2}}).train.optimizer == "adam"  # this class's defaults
    assert DeepSVDD(train__lr=0.01).config.train.lr == 0.01
    with pytest.raises(ConfigError, match="unknown config key"):
        DeepSVDDConfig().with_overrides({"model.projection_dim": 8})
    with pytest.raises(ConfigError, match="rep_dim"):
        DeepSVDDConfig().with_overrides({"model.rep_dim": 0})


def test_from_preset_takes_cobras_backbone_and_budget():
    config = DeepSVDDConfig.from_preset("cpu-small")
    assert (config.model.width, config.model.stem) == (8, "cifar")
    assert (config.train.epochs, config.train.steps_per_epoch, config.train.batch_size) == (3, 40, 32)
    assert config.train.optimizer == "adam"


def test_run_dir_checkpoints_and_a_finished_run_resumes_to_the_same_detector(digits_split, tmp_path):
    small = {**SMALL, "train.epochs": 2}
    first = DeepSVDD(overrides=small).fit(digits_split.train, run_dir=tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    again = DeepSVDD(overrides=small).fit(digits_split.train, run_dir=tmp_path, progress=False)
    assert again.train_report_.resumed_from_epoch == 2
    assert torch.equal(again.score(digits_split.test[:5]), first.score(digits_split.test[:5]))
    with pytest.raises(CheckpointError, match=r"another training run \(config.model.rep_dim: 16 -> 8\)"):
        DeepSVDD(overrides={**small, "model.rep_dim": 8}).fit(digits_split.train, run_dir=tmp_path, progress=False)


def test_pgd_does_not_raise_auroc(svdd, digits_split):
    result = evaluate_robustness(svdd, digits_split.test, digits_split.test_labels, AttackConfig(eps="8/255", steps=5))
    assert result.auroc_attack <= result.auroc_clean
    assert result.auroc_attack < 0.5  # a non-robust detector: seen 0.12 here
