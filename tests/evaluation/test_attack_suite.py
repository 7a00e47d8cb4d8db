"""The attack suite: a row per (method, attack, target, eps), a worst case that no attack beats, reports."""

import json
import math

import pytest
import torch

from robustad.attacks.canaries import GradientMasked, PixelKNN
from robustad.errors import ConfigError
from robustad.evaluation.suite import AttackSpec, SuiteConfig, run_suite, suite_preset


@pytest.fixture(scope="module")
def knn(digits_split):
    return PixelKNN().fit(digits_split.train)


@pytest.fixture(scope="module")
def quick_result(fitted_cobra, knn, digits_split):
    return run_suite({"cobra": fitted_cobra, "knn": knn}, digits_split.test, digits_split.test_labels, "quick")


def test_suite_has_a_row_per_attack_and_a_worst_case(quick_result):
    attacks = {r["attack"] for r in quick_result.rows if r["method"] == "cobra" and math.isclose(r["eps"], 8 / 255)}
    assert {"pgd-5x2", "pgd-5x1-cosine", "apgd-ce-5x1", "square-20", "adaptive", "adaptive:lse:0.02",
            "adaptive:similarity", "adaptive:shift", "transfer:knn", "worst-case"} <= attacks
    # the PixelKNN has no ShiftScore: no adaptive rows for it, and cpu-small's score draws nothing at random
    assert not any(r["attack"].startswith("adaptive") for r in quick_result.rows if r["method"] == "knn")
    adaptive = next(r for r in quick_result.rows if r["method"] == "cobra" and r["attack"] == "adaptive")
    assert "eot" in adaptive["skipped"]
    # the sweep attack runs at its own budgets only
    sweep = {r["eps_255"] for r in quick_result.rows if r["attack"] == "pgd-3-sweep"}
    assert sweep == {4.0, 16.0}
    assert all(r["seconds"] is None or r["seconds"] >= 0 for r in quick_result.rows)


def test_worst_case_is_no_better_for_the_defender_than_any_attack(quick_result):
    for w in quick_result.worst_rows():
        others = [r["auroc"] for r in quick_result.rows if (r["method"], r["target"], r["eps"]) ==
                  (w["method"], w["target"], w["eps"]) and r["attack"] != "worst-case"]
        assert others and w["auroc"] <= min(others) + 1e-12
        assert w["auroc"] <= quick_result.auroc(w["method"], "clean") + 1e-12
        assert sum(w["winners"].values()) == quick_result.labels.numel()
    cobra = quick_result.auroc("cobra", "worst-case", "both", 8 / 255)
    assert cobra < quick_result.auroc("cobra", "clean") - 0.1


def test_suite_writes_json_markdown_and_plots(quick_result, tmp_path):
    md = quick_result.write(tmp_path, title="digits 0")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["worst_case"] and report["rows"] == json.loads(json.dumps(quick_result.rows))
    assert report["suite"]["name"] == "quick"
    text = md.read_text()
    assert text.startswith("# robustad report: digits 0") and "worst-case" in text and "auroc_vs_eps.png" in text
    # how many attacks each worst case spans: all of them at 8/255, only the sweep at 4/255 and 16/255
    worst = [line for line in text.splitlines() if line.startswith("| cobra | both |") and line.count("|") == 9]
    counts = {line.split(" | ")[2]: line.split(" | ")[5] for line in worst}
    assert counts["4/255"] == counts["16/255"] == "1" and int(counts["8/255"]) > 5
    for png in ("auroc_vs_eps.png", "histograms.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_masked_gradients_fool_pgd_but_not_the_suite(fitted_cobra, digits_split):
    """A detector that only hides its gradients: PGD sees nothing, Square and transfer still break it."""
    masked = GradientMasked(fitted_cobra)
    config = SuiteConfig(name="t", attacks=(AttackSpec("pgd", steps=5), AttackSpec("square", queries=50),
                                            AttackSpec("transfer", steps=5, schedule="cosine")))
    result = run_suite({"masked": masked}, digits_split.test, digits_split.test_labels, config,
                       surrogate={"honest": fitted_cobra})
    clean, pgd = result.auroc("masked", "clean"), result.auroc("masked", "pgd-5x1")
    worst = result.auroc("masked", "worst-case")
    assert pgd > clean - 0.05  # gradient attack stalls
    assert result.auroc("masked", "transfer:honest") < clean - 0.2
    assert worst < pgd - 0.2


def test_suite_config_errors():
    with pytest.raises(ConfigError):
        suite_preset("gigantic")
    with pytest.raises(ConfigError):
        SuiteConfig(attacks=(AttackSpec("fgsm"),)).validate()
    with pytest.raises(ConfigError):
        SuiteConfig(attacks=(AttackSpec("pgd"), AttackSpec("pgd"))).validate()
    with pytest.raises(ConfigError):
        SuiteConfig(targets=("sideways",)).validate()
    with pytest.raises(ConfigError):
        SuiteConfig(eps=("2",)).validate()
    with pytest.raises(ConfigError):
        SuiteConfig(attacks=(AttackSpec("pgd", schedule="linear"),)).validate()
    with pytest.raises(ConfigError):
        SuiteConfig(attacks=(AttackSpec("adaptive", step_size="1/0"),)).validate()


@pytest.mark.parametrize("kind", ["pgd", "adaptive", "transfer"])
def test_attack_settings_are_parsed_and_honoured_as_recorded(kind, fitted_cobra, knn, digits_split, monkeypatch):
    """A step size like '1/255' is a number after validation, and the schedule a report records is
    the one that ran (adaptive and transfer once turned 'constant' into 'cosine' without saying so)."""
    import robustad.attacks.pgd as pgd

    seen = []
    real = pgd.step_sizes
    monkeypatch.setattr(pgd, "step_sizes", lambda *a, **k: seen.append(a) or real(*a, **k))
    spec = AttackSpec(kind, steps=2, schedule="step" if kind == "pgd" else "constant", step_size="1/255")
    config = SuiteConfig(name="t", attacks=(spec,)).validate()
    assert spec.step_size == pytest.approx(1 / 255)
    x, y = digits_split.test[:20], digits_split.test_labels[:20]
    result = run_suite({"cobra": fitted_cobra}, x, y, config, surrogate={"knn": knn})
    assert seen and all(a[0] == spec.schedule and a[3] == pytest.approx(1 / 255) for a in seen)
    assert result.to_dict()["suite"]["attacks"][0]["schedule"] == spec.schedule


def test_presets_are_valid_and_the_cpu_one_has_every_kind():
    for name in ("cpu", "full", "quick"):
        suite_preset(name).validate()
    kinds = {a.kind for a in suite_preset("cpu").attacks}
    assert kinds == {"pgd", "apgd", "square", "adaptive", "transfer"}
    assert any(a.kind == "pgd" and a.steps >= 100 and a.restarts >= 2 for a in suite_preset("cpu").attacks)


def test_labels_that_do_not_fit_the_images_are_refused_before_any_attack():
    from robustad.attacks.base import AttackConfig
    from robustad.errors import InputError
    from robustad.evaluation.robustness import evaluate_robustness

    images = torch.rand(6, 1, 8, 8)
    for labels, match in [(torch.tensor([0, 1, 0, 1, 0]), "one label per image: 6 images"),
                          (torch.tensor([0, 1, 2, 1, 0, 1]), "0 \\(normal\\) or 1"),
                          (torch.zeros(6), "both normal")]:
        with pytest.raises(InputError, match=match):
            evaluate_robustness(object(), images, labels, AttackConfig(eps="8/255", steps=1))
        with pytest.raises(InputError, match=match):
            run_suite({"x": object()}, images, labels, "quick")


def test_a_suite_runs_at_the_detectors_budget_unless_told_otherwise():
    from robustad.evaluation.suite import suite_for_detector

    two = 2 / 255
    assert suite_for_detector("cpu", two).eps == (pytest.approx(two),)  # one-budget preset: the detector's own
    assert suite_for_detector("cpu", two, eps="4/255").eps == (pytest.approx(4 / 255),)
    assert len(suite_for_detector("full", two).eps) == 4  # a sweep keeps its budgets
    assert suite_for_detector("full", two, budgets=["1/255", "3/255"]).eps == (pytest.approx(1 / 255),
                                                                               pytest.approx(3 / 255))
    with pytest.raises(ConfigError):
        suite_for_detector("full", two, budgets=[])
