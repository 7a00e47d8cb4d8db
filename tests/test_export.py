"""ONNX export: what the graph does besides the score (resize, channels, bad pixels), its metadata, and the CLI.

Parity for every detector class is in tests/methods/test_contract.py.
"""

import csv

import numpy as np
import onnxruntime as ort
import pytest
import torch

from robustad.cli import main
from robustad.data.folder import save_image
from robustad.errors import CheckpointError, InputError, OutputError
from robustad.export import PARITY_TOLERANCE, OnnxDetector, export_onnx
from robustad.methods.catalog import build_detector


def _close(a, b) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return bool(((a - b).abs() / b.abs().clamp_min(1.0)).max() <= PARITY_TOLERANCE)


def _run(path, x: torch.Tensor):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy().astype(np.float32)})


@pytest.fixture(scope="module")
def resizing(digits_split, tmp_path_factory):
    """pixel-knn trained at 16 px on the 8 px digits: it resizes its inputs, so the graph must too."""
    det = build_detector("pixel-knn", "digits-cpu", overrides={"image_size": 16}).fit(digits_split.train, progress=False)
    path = tmp_path_factory.mktemp("onnx") / "pixel-knn.onnx"
    export_onnx(det, path)
    return det, path


def test_the_graph_resizes_as_the_detector_does(resizing, digits_split):
    det, path = resizing
    x = digits_split.test[:9]  # 8 px: the detector resizes to 16 px
    assert det.image_size_ == (16, 16) and tuple(x.shape[-2:]) == (8, 8)
    score, normalized, anomalous, valid = _run(path, x)
    assert _close(score, det.score(x)) and valid.all()
    assert _close(normalized, det.normalized_score(x)) and np.array_equal(anomalous, det.predict(x).numpy() == 1)


def test_the_graph_takes_colour_for_a_gray_detector_and_marks_bad_images(resizing, digits_split):
    det, path = resizing
    gray = digits_split.test[:4]
    rgb = torch.cat([gray, gray.flip(-1), gray.flip(-2)], dim=1)  # three different channels
    luma = 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]
    assert _close(_run(path, rgb)[0], det.score(luma))
    assert _close(_run(path, gray)[0], det.score(gray))  # one channel passes through
    bad = gray.clone()
    bad[1, 0, 2, 2] = float("nan")
    bad[2, 0, 0, 0] = 1.5
    score, _, _, valid = _run(path, bad)
    assert valid.tolist() == [True, False, False, True] and np.isnan(score[1:3]).all()
    assert _close(score[[0, 3]], det.score(gray[[0, 3]]))  # the others are unaffected


def test_the_graph_repeats_gray_for_a_colour_detector(digits_split, tmp_path):
    colour = digits_split.train.repeat(1, 3, 1, 1)
    det = build_detector("pixel-knn", "digits-cpu", overrides={"image_size": None}).fit(colour, progress=False)
    export_onnx(det, tmp_path / "c.onnx")
    gray = digits_split.test[:5]
    assert _close(_run(tmp_path / "c.onnx", gray)[0], det.score(gray.repeat(1, 3, 1, 1)))
    with pytest.raises(InputError, match="3-channel"):  # the Python runner keeps PyTorch's checks
        OnnxDetector(tmp_path / "c.onnx").score(gray)


def test_density_normalised_patches_export(digits_split, tmp_path):
    det = build_detector("pixel-patch-density", "digits-cpu",
                         overrides={"image_size": None, "patch_size": 4, "patch_stride": 2}).fit(digits_split.train,
                                                                                                progress=False)
    assert det.scorer.bank_scale is not None
    export_onnx(det, tmp_path / "d.onnx")
    test = digits_split.test[:12]
    assert _close(OnnxDetector(tmp_path / "d.onnx").score(test), det.score(test))


def test_metadata_carries_the_threshold_and_scale(resizing):
    det, path = resizing
    exported = OnnxDetector(path)
    assert exported.threshold_ == pytest.approx(det.threshold_)
    assert exported.score_scale_ == pytest.approx(det.score_scale_)
    assert exported.metadata["method"] == "pixel-knn" and exported.image_size_ == (16, 16)


def test_a_parity_failure_writes_nothing(resizing, tmp_path, monkeypatch):
    import robustad.export as export

    det, _ = resizing
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # no difference is small enough
    with pytest.raises(OutputError, match="differ from PyTorch"):
        export.export_onnx(det, tmp_path / "never.onnx")
    assert not (tmp_path / "never.onnx").exists() and list(tmp_path.iterdir()) == []


def test_only_robustad_exports_are_run(tmp_path):
    torch.onnx.export(torch.nn.Linear(2, 1).eval(), (torch.rand(1, 2),), tmp_path / "other.onnx", dynamo=True)
    with pytest.raises(CheckpointError, match="not written by robustad export"):
        OnnxDetector(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a model")
    with pytest.raises(CheckpointError, match="not a readable ONNX model|not written by robustad"):
        OnnxDetector(tmp_path / "junk.onnx")


def test_cli_export_then_score_with_onnxruntime(digits_split, tmp_path, capsys):
    """A user's own folder of normal images: train the default detector, score, export, score through onnxruntime."""
    from tests.test_cli import TINY_SET

    good, folder = tmp_path / "good", tmp_path / "images"
    good.mkdir()
    folder.mkdir()
    for i, image in enumerate(digits_split.train[:80]):
        save_image(image, good / f"{i:03d}.png")
    for i in range(6):
        save_image(digits_split.test[i], folder / f"{i}.png")
    det_dir = tmp_path / "det"
    tiny = TINY_SET[2:]  # the default method for 8 px images (the ensemble), at tiny settings
    assert main(["train", "--data", "folder", "--normal-dir", str(good), "--out", str(det_dir), "--quiet", *tiny]) == 0
    model = tmp_path / "model.onnx"
    assert main(["export", str(det_dir), "--format", "onnx", "--out", str(model), "--check-images", str(folder)]) == 0
    assert "match PyTorch's" in capsys.readouterr().err
    assert main(["score", "--onnx", str(model), str(folder), "--out", str(tmp_path / "onnx.csv")]) == 0
    assert main(["score", "--detector", str(det_dir), str(folder), "--out", str(tmp_path / "torch.csv")]) == 0
    onnx_rows = list(csv.DictReader(open(tmp_path / "onnx.csv")))
    torch_rows = list(csv.DictReader(open(tmp_path / "torch.csv")))
    assert [r["path"] for r in onnx_rows] == [r["path"] for r in torch_rows] and len(onnx_rows) == 6
    assert _close([float(r["score"]) for r in onnx_rows], [float(r["score"]) for r in torch_rows])
    assert [r["anomalous"] for r in onnx_rows] == [r["anomalous"] for r in torch_rows]
    capsys.readouterr()
    assert main(["export", str(det_dir), "--out", str(tmp_path / "model.txt")]) == 2
    assert "name the model file with .onnx" in capsys.readouterr().err
    assert main(["score", "--onnx", str(model), str(folder), "--out", str(model)]) == 2
    assert main(["score", "--onnx", str(tmp_path / "missing.onnx"), str(folder)]) == 2
    assert "is not a file" in capsys.readouterr().err
