"""One contract, checked for every detector class of the catalog, on real images (scikit-learn's digits).

A new detector registered in DETECTOR_CLASSES is tested here without a line of its own: it must
fit, give one finite score per image that does not depend on the batch, separate the digits
better than chance, have a gradient for the attacks, survive a save/load round trip bit for
bit, and lose AUROC to a PGD attack on its own score.
"""

import pytest
import torch
import torch.nn.functional as F

from robustad.attacks.pgd import attack_score
from robustad.evaluation.metrics import auroc
from robustad.methods.catalog import DETECTOR_CLASSES, build_detector, detector_class
from robustad.methods.registry import load_detector
from tests.conftest import TINY

# the smallest settings each detector class trains with in seconds; every key is a real config field
TINY_BY_KIND = {
    # at 3 steps per epoch COBRA's digits AUROC sat at 0.56-0.58, a thread count from the 0.6 floor
    "cobra": {**TINY, "train.steps_per_epoch": 6},
    "cobra-patch": {"train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 8, "adversarial.steps": 1,
                    "score.bank_size": 300},
    "cobra-ensemble": TINY,  # passed on to the COBRA member
    "deep-svdd": {"model.width": 4, "model.rep_dim": 8, "train.epochs": 2, "train.batch_size": 16,
                  "train.steps_per_epoch": 2, "train.warmup_epochs": 0},
    "knn": {**TINY, "train.epochs": 1},  # the backbone's training
    "pixel-knn": {},
    "pixel-patch-knn": {"bank_size": 2000},
    "image-stats": {},
    "pixel-pca": {},
}
SIDE = 16  # digits upsampled from 8 px: large enough for every trunk's strides


def test_every_detector_class_has_tiny_settings_here():
    assert set(TINY_BY_KIND) == set(DETECTOR_CLASSES)


@pytest.fixture(scope="module")
def digits16(digits_split):
    def up(x):
        return F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False).clamp(0, 1)

    return up(digits_split.train), up(digits_split.test), digits_split.test_labels


@pytest.fixture(scope="module", params=sorted(DETECTOR_CLASSES))
def fitted(request, digits16):
    kind = request.param
    torch.manual_seed(0)
    detector = build_detector(kind, "digits-cpu", overrides={**TINY_BY_KIND[kind], "image_size": None})
    assert isinstance(detector, detector_class(kind))
    return kind, detector.fit(digits16[0], progress=False)


def test_scores_are_finite_batch_independent_and_better_than_chance(fitted, digits16):
    kind, det = fitted
    _, test, labels = digits16
    s = det.score(test)
    assert s.shape == (test.shape[0],) and torch.isfinite(s).all()
    alone = torch.stack([det.score(test[i:i + 1])[0] for i in range(4)])
    assert torch.allclose(alone, s[:4], rtol=1e-4, atol=1e-4), kind
    assert torch.equal(det.score(test), s), f"{kind}: scores change between calls"
    assert auroc(s, labels) > 0.6, kind  # digit 0 against the other digits
    assert det.predict(test).dtype in (torch.int64, torch.long) and set(det.predict(test).tolist()) <= {0, 1}


def test_scores_have_a_gradient_for_the_attacks(fitted, digits16):
    kind, det = fitted
    x = digits16[1][:6].clone().requires_grad_(True)
    det.score(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, kind


def test_save_load_round_trip_keeps_scores_and_threshold(fitted, digits16, tmp_path):
    kind, det = fitted
    det.save(tmp_path / kind)
    loaded = load_detector(tmp_path / kind, device="cpu")
    assert type(loaded) is type(det)
    assert torch.allclose(loaded.score(digits16[1]), det.score(digits16[1]), atol=1e-6), kind
    assert loaded.threshold_ == pytest.approx(det.threshold_)


def test_pgd_on_its_own_score_lowers_its_auroc(fitted, digits16):
    kind, det = fitted
    _, test, labels = digits16
    clean = auroc(det.score(test), labels)
    attacked = attack_score(det, test, labels, eps=32 / 255, steps=10, target="both")
    assert auroc(det.score(attacked), labels) < clean - 0.1, kind


def test_the_onnx_export_scores_as_pytorch_does(fitted, digits16, tmp_path):
    from robustad.export import PARITY_TOLERANCE, OnnxDetector, export_onnx

    kind, det = fitted
    test = digits16[1][:20]
    report = export_onnx(det, tmp_path / f"{kind}.onnx", check_images=test)
    exported = OnnxDetector(tmp_path / f"{kind}.onnx")
    expected, got = det.score(test), exported.score(test)
    assert ((got - expected).abs() / expected.abs().clamp_min(1.0)).max() <= PARITY_TOLERANCE, kind
    assert report.max_rel_diff <= PARITY_TOLERANCE and report.images_checked == 20 + 6
    assert exported.threshold_ == pytest.approx(det.threshold_) and exported.name == det.name
    near = (expected - det.threshold_).abs() < 1e-3  # decisions may differ only within rounding of the threshold
    assert torch.equal(exported.predict(test)[~near], det.predict(test)[~near]), kind
