"""The training and evaluation plans: settled from the data spec and the settings before any image is read."""

import pytest

from robustad.errors import ConfigError
from robustad.pipeline import DataSpec, plan_evaluation, plan_training, run_evaluation


def test_the_plan_folds_size_and_hold_out_into_the_settings_and_reads_at_the_configs_size():
    spec = DataSpec(name="textures", category="brick")
    plan = plan_training(spec, image_size=32, holdout=0.2, settings=["train.epochs=1"])
    assert plan.settings == ["score.holdout_fraction=0.2", "image_size=32", "train.epochs=1"]
    assert plan.config.image_size == 32 and plan.config.score.holdout_fraction == 0.2
    assert plan.data.image_size == 32 and spec.image_size is None, "the caller's spec is not changed"
    # a setting that names the size wins over image_size
    assert plan_training(spec, image_size=32, settings=["image_size=48"]).config.image_size == 48
    # the method is chosen by the images' size and said
    assert plan.setup.method == "cobra-patch" and any("default for 64 px" in n for n in plan.setup.notes)


def test_a_bad_setting_fails_before_any_image_is_read():
    spec = DataSpec(name="folder", normal_dir="/nowhere/at/all")  # reading it would fail differently
    with pytest.raises(ConfigError, match="unknown config key"):
        plan_training(spec, method="cobra", settings=["train.epochz=1"])


def test_an_evaluation_plan_takes_the_detectors_budget_and_a_bad_setting_fails_before_the_data(fitted_cobra):
    nowhere = DataSpec(name="folder", normal_dir="/nowhere/at/all")
    plan = plan_evaluation({"c": fitted_cobra}, nowhere)
    assert plan.attack.eps == pytest.approx(fitted_cobra.config.evaluation.eps)
    assert plan.attack.steps == fitted_cobra.config.evaluation.steps and plan.suite is None
    assert plan_evaluation({"c": fitted_cobra}, nowhere, eps="2/255", steps=7).attack.steps == 7
    # a suite or the sanity checks cap the test images unless the spec says how many
    suite_plan = plan_evaluation({"c": fitted_cobra}, nowhere, suite="quick", sanity=True)
    assert suite_plan.attack is None and suite_plan.sanity is not None
    assert suite_plan.data.max_test == suite_plan.suite.num_test and nowhere.max_test is None
    for kwargs, message in [({"eps": "nine"}, "eps"), ({"suite": "quick", "suite_eps": []}, "at least one budget"),
                            ({"suite_eps": ["2/255"]}, "need a suite"), ({"target": "sideways"}, "target")]:
        with pytest.raises(ConfigError, match=message):
            plan_evaluation({"c": fitted_cobra}, nowhere, **kwargs)


def test_a_python_evaluation_writes_the_same_report_as_the_command(fitted_cobra, tmp_path):
    plan = plan_evaluation({"c": fitted_cobra}, DataSpec(name="digits", normal_classes=[0], max_test=40), steps=2)
    report, checks = run_evaluation(plan, tmp_path, log=lambda m: None)
    assert report == tmp_path / "report.md" and checks == {}
    import json

    methods = json.loads((tmp_path / "report.json").read_text())["methods"]
    assert 0.0 <= methods["c"]["auroc_attack"] <= methods["c"]["auroc_clean"] + 0.05


def test_pgd_attack_takes_the_budget_from_the_detector_config_unless_given():
    from types import SimpleNamespace

    from robustad.pipeline import pgd_attack

    evaluation = SimpleNamespace(eps=2 / 255, steps=7)
    assert (pgd_attack(evaluation).eps, pgd_attack(evaluation).steps) == (2 / 255, 7)
    given = pgd_attack(evaluation, eps="4/255", steps=3, restarts=2, target="normal", seed=5)
    assert (given.eps, given.steps, given.restarts, given.target, given.seed) == (4 / 255, 3, 2, "normal", 5)
    assert (pgd_attack().eps, pgd_attack().steps) == (8 / 255, 50)  # no config: the field's usual budget
