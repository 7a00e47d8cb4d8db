"""The Cobra detector API on real data (scikit-learn digits): fit, score, predict, save, load, errors."""

import json

import numpy as np
import pytest
import torch

from robustad import Cobra
from robustad.errors import CheckpointError, ConfigError, DataError, InputError
from robustad.evaluation.metrics import auroc
from robustad.methods.base import NotFittedError
from robustad.methods.cobra.score import ShiftScore
from tests.conftest import TINY


def test_scores_have_one_value_per_image_and_rank_digits(fitted_cobra, digits_split):
    scores = fitted_cobra.score(digits_split.test)
    assert scores.shape == (digits_split.test.shape[0],)
    assert torch.isfinite(scores).all()
    # tiny training budget, but the score must carry signal on real digits
    assert auroc(scores, digits_split.test_labels) > 0.6


def test_score_is_deterministic_and_independent_of_batch_position(fitted_cobra, digits_split):
    x = digits_split.test[:10]
    a = fitted_cobra.score(x)
    assert torch.equal(a, fitted_cobra.score(x))
    b = fitted_cobra.score(x.flip(0)).flip(0)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(fitted_cobra.score(x[3:4]), a[3:4], atol=1e-5)


def test_random_views_and_shifts_in_the_score_are_position_independent(digits_split):
    det = Cobra.from_preset(
        "cpu-small", overrides={**TINY, "score.views": 2, "transforms.pseudo_anomalies": ["cutpaste", "cutout"]}
    ).fit(digits_split.train, progress=False)
    x = digits_split.test[:6]
    assert torch.allclose(det.score(x).flip(0), det.score(x.flip(0)), atol=1e-5)


def test_score_is_differentiable(fitted_cobra, digits_split):
    x = digits_split.test[:8].clone().requires_grad_(True)
    fitted_cobra.score(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_threshold_is_calibrated_on_held_out_normals(fitted_cobra, digits_split):
    assert fitted_cobra.fit_info_["num_holdout"] > 0
    assert np.isfinite(fitted_cobra.threshold_)
    pred = fitted_cobra.predict(digits_split.test)
    assert set(pred.unique().tolist()) <= {0, 1}
    assert torch.equal(pred, (fitted_cobra.score(digits_split.test) > fitted_cobra.threshold_).long())
    assert np.allclose(fitted_cobra.decision_function(digits_split.test[:4]), fitted_cobra.score(digits_split.test[:4]).numpy())


def test_accepts_numpy_arrays_of_shape_nhw(digits_split):
    raw = (digits_split.train[:40, 0].numpy() * 255).astype(np.uint8)
    det = Cobra.from_preset("cpu-small", overrides={**TINY, "train.epochs": 1}).fit(raw, progress=False)
    assert det.in_channels_ == 1 and det.image_size_ == (8, 8)


def test_save_and_load_give_identical_scores(fitted_cobra, digits_split, tmp_path):
    fitted_cobra.save(tmp_path / "det")
    loaded = Cobra.load(tmp_path / "det")
    x = digits_split.test[:12]
    assert torch.allclose(loaded.score(x), fitted_cobra.score(x), atol=1e-6)
    assert loaded.threshold_ == pytest.approx(fitted_cobra.threshold_)
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["config"]["model"]["width"] == 4 and "torch" in meta["library_versions"]


def test_load_refuses_what_is_not_a_checkpoint(tmp_path, fitted_cobra, reseal):
    with pytest.raises(CheckpointError, match="not a robustad detector"):
        Cobra.load(tmp_path)
    fitted_cobra.save(tmp_path / "det")
    meta_path = tmp_path / "det" / "detector.json"
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "format": 999}))
    with pytest.raises(CheckpointError, match="format 999"):
        Cobra.load(tmp_path / "det")

    wider = json.loads(json.dumps(meta))
    wider["config"]["model"]["width"] = 8
    meta_path.write_text(json.dumps(wider))
    with pytest.raises(CheckpointError, match="detector.json does not match its own checksum"):
        Cobra.load(tmp_path / "det")
    reseal(tmp_path / "det", wider)
    with pytest.raises(CheckpointError, match="does not match the config"):
        Cobra.load(tmp_path / "det")

    meta_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Cobra.load(tmp_path / "det")

    for key, value, problem in [("threshold", "high", "threshold should be a number"),
                                ("image_size", [8], "image_size should be"), ("in_channels", "1", "in_channels")]:
        meta_path.write_text(json.dumps({**meta, key: value}))
        with pytest.raises(CheckpointError, match=f"detector.json is damaged: {problem}"):
            Cobra.load(tmp_path / "det")

    # weights changed after saving, same length: caught by the checksum, not read as numbers
    meta_path.write_text(json.dumps(meta))
    weights = tmp_path / "det" / "detector.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1000:] = bytes(255 - b for b in data[-1000:])
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the checksum in detector.json"):
        Cobra.load(tmp_path / "det")

    meta_path.write_text(json.dumps({**meta, "threshold": meta["threshold"] + 1}))  # a plausible edit
    with pytest.raises(CheckpointError, match="does not match its own checksum"):
        Cobra.load(tmp_path / "det")
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("weights_sha256", "detector_sha256")}))
    with pytest.raises(CheckpointError, match="has no checksum"):  # an older save: refused, not trusted
        Cobra.load(tmp_path / "det")

    weights.write_bytes(b"garbage")
    reseal(tmp_path / "det", meta)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        Cobra.load(tmp_path / "det")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda x: x.repeat(1, 3, 1, 1), "1-channel"),
        (lambda x: torch.nn.functional.pad(x, (1, 1, 1, 1)), "8x8"),
        (lambda x: x.masked_fill(torch.zeros_like(x, dtype=torch.bool).index_fill_(0, torch.tensor([0]), True), float("nan")), "NaN"),
        (lambda x: x * 255, r"\[0,1\]"),
        (lambda x: (x * 255).to(torch.int32), "float"),
    ],
)
def test_bad_inputs_get_clear_errors(fitted_cobra, digits_split, make, match):
    with pytest.raises(InputError, match=match):
        fitted_cobra.score(make(digits_split.test[:4]))


def test_unfitted_and_empty_inputs(digits_split):
    det = Cobra.from_preset("cpu-small", overrides=TINY)
    with pytest.raises(NotFittedError):
        det.score(digits_split.test[:2])
    with pytest.raises(InputError):
        det.fit(torch.zeros(0, 1, 8, 8), progress=False)
    with pytest.raises(DataError, match="at least 2"):
        det.fit(digits_split.train[:1], progress=False)


def test_image_size_resizes_inputs(digits_split):
    det = Cobra.from_preset("cpu-small", overrides={**TINY, "train.epochs": 1, "image_size": 12}).fit(
        digits_split.train[:40], progress=False
    )
    assert det.image_size_ == (12, 12)
    assert det.score(digits_split.test[:3]).shape == (3,)  # 8x8 inputs are resized


def test_an_empty_batch_scores_to_an_empty_tensor(fitted_cobra):
    scores = fitted_cobra.score(torch.zeros(0, 1, 8, 8))
    assert scores.shape == (0,)
    assert fitted_cobra.predict(torch.zeros(0, 1, 8, 8)).shape == (0,)


def test_a_subset_of_shifts_scores_as_the_full_score_restricted_to_those_shifts(fitted_cobra, digits_split):
    def scorer(ids):
        s = ShiftScore(fitted_cobra.net, fitted_cobra.pseudo_anomalies, fitted_cobra.views, 0, 1234, shift_ids=ids)
        s.fit_bank(digits_split.train[:60])
        return s

    full, half = scorer(None), scorer([0, 2])
    x = digits_split.test[:10]
    with torch.no_grad():
        z, logit = full.shifted_features(x)
        terms = torch.bmm(z, full.bank.transpose(1, 2)).amax(dim=2) * full.similarity_weight[:, None]
        terms = terms + logit * full.shift_weight[:, None]  # [K, N] normality per shift
        assert torch.allclose(half(x), -terms[[0, 2]].mean(dim=0), atol=1e-5)
        assert half.bank.shape[0] == 2 and not torch.allclose(half(x), full(x))


def test_score_shifts_by_name_survive_save_and_load(digits_split, tmp_path):
    det = Cobra.from_preset("cpu-small", overrides={**TINY, "score.shifts": ["identity", "rotate180"]})
    det.fit(digits_split.train, progress=False)
    assert det.scorer.bank.shape[0] == 2
    det.save(tmp_path / "det")
    loaded = Cobra.load(tmp_path / "det")
    x = digits_split.test[:8]
    assert loaded.config.score.shifts == ["identity", "rotate180"]
    assert torch.allclose(loaded.score(x), det.score(x), atol=1e-6)


@pytest.mark.parametrize("shifts, match", [(["rotate45"], "not a shift"), ([], "non-empty"),
                                           (["identity", "identity"], "twice")])
def test_bad_score_shifts_are_refused_before_training(shifts, match):
    with pytest.raises(ConfigError, match=match):
        Cobra.from_preset("cpu-small", overrides={"score.shifts": shifts})


def test_the_score_runs_a_folded_copy_in_eval_mode_and_follows_the_weights(digits_split):
    det = Cobra.from_preset("cpu-small", overrides=TINY).fit(digits_split.train, progress=False)
    scorer, x = det.scorer, digits_split.test[:12]
    folded = scorer.network()
    assert folded is not scorer.net and folded is scorer.network()  # built once, then reused
    with torch.no_grad():
        direct = scorer.net(x).projection
        assert torch.allclose(folded(x).projection, direct, atol=1e-5)
    before = det.score(x)
    with torch.no_grad():  # a change of the trained weights (training, loading) makes a new copy
        scorer.net.encoder.stem[1].running_mean.add_(0.5)
    assert scorer.network() is not folded
    assert not torch.allclose(det.score(x), before)
    scorer.net.train()
    assert scorer.network() is scorer.net  # training mode: batch statistics, nothing folded
