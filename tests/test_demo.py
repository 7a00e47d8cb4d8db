"""The demo flow end to end (tiny settings, scikit-learn digits instead of MNIST), and its resume."""

import json

from robustad.pipeline import run_demo


def test_quick_demo_writes_the_report_and_resumes(tmp_path, capsys):
    report_md = run_demo(tmp_path, progress=False, quick=True, dataset="digits")
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["methods"]) == {"cobra", "baseline"}
    for method in report["methods"].values():
        assert 0 <= method["auroc_clean"] <= 1 and 0 <= method["auroc_attack"] <= 1
        assert method["attack"]["eps"] == 8 / 255 and method["attack"]["target"] == "both"
        assert {"name", "steps", "restarts"} <= set(method["attack"])
    assert report["methods"]["cobra"]["config"]["adversarial"]["enabled"] is True
    assert report["methods"]["baseline"]["config"]["adversarial"]["enabled"] is False
    assert {"torch", "robustad"} <= set(report["library_versions"]) and report["seed"] == 0
    assert report["timings"]["total"] > 0
    assert report_md.read_text().count("| cobra |") == 2  # 8/255 and the larger budget
    assert "Note: both detectors come from one training seed" in report_md.read_text()
    assert [a["attack"]["eps"] for a in report["methods"]["cobra"]["attacks"]] == [8 / 255, 32 / 255]
    assert (tmp_path / "histograms.png").is_file()

    capsys.readouterr()
    run_demo(tmp_path, progress=False, quick=True, dataset="digits")
    assert capsys.readouterr().err.count("loading it instead") == 2


def test_quick_surface_demo_has_the_default_detector_its_twin_the_pixel_knn_and_maps(tmp_path, capsys):
    from robustad.pipeline import run_surface_demo

    report_md = run_surface_demo(tmp_path, progress=False, quick=True)
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["methods"]) == ["cobra-patch", "twin", "pixel-knn"]
    assert report["methods"]["cobra-patch"]["config"]["adversarial"]["enabled"] is True
    assert report["methods"]["twin"]["config"]["adversarial"]["enabled"] is False
    for name in ("cobra-patch", "twin"):
        maps = report["methods"][name]["maps"]
        assert 0 <= maps["pixel_auroc_attack"] <= 1 and (tmp_path / maps["figure"]).is_file()
    assert [a["attack"]["eps"] for a in report["methods"]["pixel-knn"]["attacks"]] == [2 / 255, 8 / 255]
    text = report_md.read_text()
    assert "pixel AUROC clean" in text and "Note: one training seed on one texture" in text
    capsys.readouterr()
    run_surface_demo(tmp_path, progress=False, quick=True)
    assert capsys.readouterr().err.count("loading it instead") == 3
    # the demo's default detector, exported: onnxruntime scores its brick crops as PyTorch does
    from robustad.data.datasets import load_split
    from robustad.export import PARITY_TOLERANCE, OnnxDetector, export_onnx
    from robustad.methods.registry import load_detector

    det = load_detector(tmp_path / "cobra-patch")
    crops = load_split("textures", category="brick", max_test=16, image_size=det.image_size_[0]).test
    export_onnx(det, tmp_path / "demo.onnx", check_images=crops)
    expected, got = det.score(crops), OnnxDetector(tmp_path / "demo.onnx").score(crops)
    assert ((got - expected).abs() / expected.abs().clamp_min(1.0)).max() <= PARITY_TOLERANCE
