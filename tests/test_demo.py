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
