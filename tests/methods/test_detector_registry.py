"""load_detector: one entry point for every saved detector, with clear errors for anything else."""

import json

import pytest
import torch

from robustad import Cobra
from robustad.errors import CheckpointError
from robustad.evaluation.suite import AttackSpec, SuiteConfig, run_suite
from robustad.methods.deep_svdd.detector import DeepSVDD
from robustad.methods.knn.detector import KNNDetector
from robustad.methods.registry import DETECTORS, detector_class, load_detector
from tests.conftest import TINY


@pytest.fixture(scope="module")
def baselines(digits_split):
    svdd = DeepSVDD(model__width=4, model__rep_dim=8, train__epochs=3, train__batch_size=16,
                    train__steps_per_epoch=2, train__warmup_epochs=0).fit(digits_split.train, progress=False)
    knn = KNNDetector(backbone_overrides={**TINY, "train.epochs": 1}).fit(digits_split.train, progress=False)
    return {"deep-svdd": svdd, "knn": knn}


def test_every_method_is_registered_under_its_own_name():
    assert set(DETECTORS) == {"cobra", "cobra-patch", "cobra-ensemble", "deep-svdd", "knn", "pixel-knn", "pixel-patch-knn",
                                "image-stats", "pixel-pca"}
    assert all(cls.name == name for name, cls in DETECTORS.items())
    assert detector_class("knn") is KNNDetector
    with pytest.raises(CheckpointError, match="known methods: cobra, cobra-patch, cobra-ensemble, deep-svdd, knn, pixel-knn"):
        detector_class("patchcore")


def test_load_detector_picks_the_class_from_the_checkpoint(baselines, fitted_cobra, digits_split, tmp_path):
    x = digits_split.test[:6]
    for name, det in {**baselines, "cobra": fitted_cobra}.items():
        det.save(tmp_path / name)
        loaded = load_detector(tmp_path / name, device="cpu")
        assert type(loaded) is type(det)
        assert torch.allclose(loaded.score(x), det.score(x), atol=1e-6)


def test_each_class_refuses_the_others_checkpoints(baselines, tmp_path):
    baselines["deep-svdd"].save(tmp_path / "svdd")
    baselines["knn"].save(tmp_path / "knn")
    with pytest.raises(CheckpointError, match="'deep-svdd' checkpoint, not a 'cobra' one"):
        Cobra.load(tmp_path / "svdd")
    with pytest.raises(CheckpointError, match="'knn' checkpoint, not a 'deep-svdd' one"):
        DeepSVDD.load(tmp_path / "knn")


def test_load_detector_errors(baselines, tmp_path):
    with pytest.raises(CheckpointError, match="not a robustad detector"):
        load_detector(tmp_path)
    baselines["knn"].save(tmp_path / "det")
    meta_path = tmp_path / "det" / "detector.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "method": "patchcore"}))
    with pytest.raises(CheckpointError, match="'patchcore'.*known methods: cobra, cobra-patch, cobra-ensemble, deep-svdd, knn"):
        load_detector(tmp_path / "det")
    meta_path.write_text(json.dumps({**meta, "kind": "something-else"}))
    with pytest.raises(CheckpointError, match="does not describe a robustad detector"):
        load_detector(tmp_path / "det")
    meta_path.write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_detector(tmp_path / "det")


def test_the_attack_suite_runs_on_the_baselines(baselines, digits_split):
    suite = SuiteConfig(eps=("8/255",), attacks=(
        AttackSpec("pgd", steps=3), AttackSpec("apgd", steps=3), AttackSpec("square", queries=10),
        AttackSpec("adaptive", steps=3), AttackSpec("transfer", steps=3),
    ))
    result = run_suite(baselines, digits_split.test, digits_split.test_labels, suite)
    for method in baselines:
        attacks = {r["attack"] for r in result.rows if r["method"] == method}
        assert {"clean", "pgd-3x1", "apgd-ce-3x1", "square-10", "worst-case"} <= attacks
        assert any(a.startswith("transfer:") for a in attacks)
        # kNN gets its own adaptive attack (soft max over patches, soft min over the bank); Deep SVDD's
        # score has no hard max/min to smooth, so it gets none, and the report says so
        has_adaptive = any(a.startswith("adaptive") for a in attacks)
        assert has_adaptive == isinstance(baselines[method], KNNDetector)
        assert result.auroc(method, "worst-case") <= result.auroc(method, "clean")
    assert any("adaptive attack skipped for" in note for note in result.notes)


def test_the_detectors_and_the_loader_import_from_the_package():
    import robustad
    from robustad import DeepSVDD as SVDD, KNNDetector as KNN, TrainingPaused, load_detector
    from robustad.errors import RobustADError
    from robustad.methods.registry import load_detector as registry_loader

    assert (SVDD, KNN, load_detector) == (DeepSVDD, KNNDetector, registry_loader)
    assert issubclass(TrainingPaused, RobustADError)
    assert {"Cobra", "DeepSVDD", "KNNDetector", "load_detector"} <= set(robustad.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        robustad.Nope
