"""Per-data-set presets: every data set has a CPU and a paper preset; others fall back by resolution."""

import pytest
import yaml

from robustad.config import list_presets
from robustad.data.registry import DATASETS, preset_for
from robustad.errors import ConfigError, DataError
from robustad.methods.cobra.config import CobraConfig
from robustad.transforms.pseudo_anomaly import PseudoAnomalySet


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_dataset_has_a_preset_that_loads(name, scale):
    preset = preset_for(name, scale)
    config = CobraConfig.from_preset(preset)
    if name != "folder":  # folder is the user's data: it falls back by resolution
        assert preset == f"{name}-{scale}"
    assert 0 < config.evaluation.eps <= 8 / 255
    assert config.train.batch_size >= 2


def test_industrial_and_lowres_presets_pick_the_transforms_of_the_paper():
    for name in ("mvtec", "visa", "dagm", "textures"):
        for scale in ("cpu", "paper"):
            c = CobraConfig.from_preset(preset_for(name, scale))
            assert c.transforms.pseudo_anomalies == ["cutpaste"]
            assert PseudoAnomalySet(c.transforms.pseudo_anomalies).num_shifts == 2
            assert c.evaluation.eps == pytest.approx(2 / 255)
    for name in ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"):
        c = CobraConfig.from_preset(preset_for(name, "paper"))
        assert c.transforms.pseudo_anomalies == ["rotation"]
        assert PseudoAnomalySet(c.transforms.pseudo_anomalies).num_shifts == 4
        assert c.image_size == 32
        assert c.adversarial.eps == pytest.approx(4 / 255) and c.evaluation.eps == pytest.approx(8 / 255)
    assert CobraConfig.from_preset("mvtec-paper").image_size == 224


def test_fallback_by_resolution():
    assert preset_for("my-own-set", "cpu", 28) == "cpu-small"
    assert preset_for("my-own-set", "cpu", 512) == "cpu-highres"
    assert preset_for("my-own-set", "paper", 32) == "paper-lowres"
    assert preset_for("folder", "paper", 300) == "paper-highres"
    with pytest.raises(DataError, match="scale"):
        preset_for("mnist", "gpu")


def test_base_inheritance_merges_sections(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "cpu-small", "model": {"width": 4}, "train": {"epochs": 1}}))
    mine, base = CobraConfig.from_yaml(path), CobraConfig.from_preset("cpu-small")
    assert mine.model.width == 4 and mine.train.epochs == 1
    assert mine.model.stem == base.model.stem and mine.train.batch_size == base.train.batch_size
    hi = CobraConfig.from_preset("cpu-highres")
    assert hi.image_size == 64 and hi.model.stem == "imagenet" and hi.score.bank_size == base.score.bank_size


def test_bad_base_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("base: no-such-preset\n")
    with pytest.raises(ConfigError, match="no-such-preset"):
        CobraConfig.from_yaml(path)
    path.write_text("base: [1, 2]\n")
    with pytest.raises(ConfigError, match="preset name"):
        CobraConfig.from_yaml(path)


def test_evaluation_eps_is_validated():
    with pytest.raises(ConfigError, match="evaluation.eps"):
        CobraConfig.from_preset("cpu-small").with_overrides({"evaluation.eps": 2})
    assert CobraConfig.from_preset("cpu-small").with_overrides(["evaluation.eps=4/255"]).evaluation.eps == pytest.approx(4 / 255)


def test_presets_listed():
    names = list_presets()
    assert {"cpu-small", "cpu-highres", "paper-lowres", "paper-highres", "mvtec-cpu", "textures-paper"} <= set(names)
