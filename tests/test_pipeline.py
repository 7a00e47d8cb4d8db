"""The training plan: settled from the data spec and the settings before any image is read."""

import pytest

from robustad.errors import ConfigError
from robustad.pipeline import DataSpec, plan_training


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
