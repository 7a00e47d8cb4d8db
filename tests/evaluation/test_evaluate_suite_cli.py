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


def test_suite_eps_runs_the_attacks_at_other_budgets(fitted_cobra, tmp_path, capsys):
    det = fitted_cobra.save(tmp_path / "det")
    out = tmp_path / "eval"
    assert main(["evaluate", "--detector", f"tiny={det}", "--data", "digits", "--normal-class", "0", "--max-test", "20",
                 "--suite", "quick", "--suite-eps", "2/255,4/255", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    worst = {round(r["eps_255"]) for r in report["worst_case"]}
    assert {2, 4} <= worst and 8 not in worst  # the preset's 8/255 was replaced
    assert main(["evaluate", "--detector", str(det), "--data", "digits", "--suite-eps", "4/255",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--suite-eps needs --suite" in capsys.readouterr().err


def test_single_budget_suites_attack_at_the_detectors_own_budget(tmp_path, digits_split):
    """cpu/quick run at --eps, or else the detector preset's evaluation.eps (2/255 for high-res data), not 8/255."""
    from robustad import Cobra
    from tests.conftest import TINY

    det = Cobra.from_preset("cpu-small", overrides={**TINY, "evaluation.eps": "2/255"})
    det = det.fit(digits_split.train, progress=False).save(tmp_path / "det")
    base = ["evaluate", "--detector", str(det), "--data", "digits", "--normal-class", "0", "--max-test", "20",
            "--suite", "quick"]

    def budgets(out, *extra):
        assert main([*base, *extra, "--out", str(tmp_path / out)]) == 0
        report = json.loads((tmp_path / out / "report.json").read_text())
        return {round(r["eps_255"]) for r in report["worst_case"]}

    assert budgets("own") == {2, 4, 16}  # the detector's 2/255, plus the quick sweep's own 4 and 16/255
    assert budgets("flag", "--eps", "8/255") == {4, 8, 16}
