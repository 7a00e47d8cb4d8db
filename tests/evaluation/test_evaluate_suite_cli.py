"""robustad evaluate --suite / --sanity, in-process."""

import json

from robustad.cli import build_parser, main
from robustad.evaluation.suite import SUITE_PRESETS


def test_evaluate_suite_and_sanity_write_one_report(fitted_cobra, tmp_path, capsys):
    det = fitted_cobra.save(tmp_path / "det")
    out = tmp_path / "eval"
    code = main(["evaluate", "--detector", f"tiny={det}", "--data", "digits", "--normal-class", "0",
                 "--max-test", "40", "--suite", "quick", "--sanity", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tiny:" in printed and ("[PASS]" in printed or "[FAIL]" in printed) and "report.md" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["rows"] and report["worst_case"][0]["method"] == "tiny"
    assert {c["name"] for c in report["sanity"]["tiny"]["checks"]} >= {"gradients", "black_box"}
    text = (out / "report.md").read_text()
    assert "Gradient-masking sanity checks" in text and "worst-case" in text
    assert (out / "auroc_vs_eps.png").is_file() and (out / "histograms.png").is_file()


def test_evaluate_sanity_alone(fitted_cobra, tmp_path, capsys):
    det = fitted_cobra.save(tmp_path / "det")
    code = main(["evaluate", "--detector", str(det), "--data", "digits", "--normal-class", "0", "--max-test", "20",
                 "--sanity", "--out", str(tmp_path / "s")])
    assert code == 0
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert "sanity" in report and "rows" not in report


def test_cli_accepts_every_suite_preset():
    parser = build_parser()
    for name in SUITE_PRESETS:
        assert parser.parse_args(["evaluate", "--detector", "d", "--suite", name]).suite == name
