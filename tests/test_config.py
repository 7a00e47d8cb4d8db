import pytest

from robustad.config import config_keys, format_eps, list_presets, parse_eps
from robustad.errors import ConfigError
from robustad.methods.cobra.config import CobraConfig


@pytest.mark.parametrize("value,expected", [("8/255", 8 / 255), (0.5, 0.5), ("0.25", 0.25), (0, 0.0), (1, 1.0)])
def test_parse_eps_accepts_fractions_and_floats(value, expected):
    assert parse_eps(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["-1/255", 1.5, "300/255", "abc", "nan", True, "1/0", "1e400", [1], {"a": 1}])
def test_parse_eps_rejects_values_outside_unit_interval(value):
    with pytest.raises(ConfigError, match="eps"):
        parse_eps(value)


@pytest.mark.parametrize("eps,text", [(8 / 255, "8/255"), (2 / 255, "2/255"), (0.03, "0.03"), (2.5 / 255, "0.009804"),
                                      (0.0, "0")])
def test_format_eps_shows_255ths_only_when_whole(eps, text):
    assert format_eps(eps) == text


def test_every_preset_loads_and_validates():
    assert {"cpu-small", "paper-lowres", "paper-highres"} <= set(list_presets())
    for name in list_presets():
        config = CobraConfig.from_preset(name)
        assert 0 < config.adversarial.eps <= 1


def test_paper_presets_follow_the_method():
    low, high = CobraConfig.from_preset("paper-lowres"), CobraConfig.from_preset("paper-highres")
    assert low.transforms.pseudo_anomalies == ["rotation"] and low.image_size == 32
    assert low.adversarial.eps == pytest.approx(4 / 255) and low.model.width == 64
    assert high.transforms.pseudo_anomalies == ["cutpaste"] and high.image_size == 224
    assert high.model.stem == "imagenet" and high.adversarial.eps == pytest.approx(2 / 255)


def test_overrides_from_dict_and_strings():
    config = CobraConfig().with_overrides(["train.epochs=3", "adversarial.eps=2/255", "loss.contrastive=cl"])
    assert config.train.epochs == 3
    assert config.adversarial.eps == pytest.approx(2 / 255)
    assert config.loss.contrastive == "cl"
    assert CobraConfig().with_overrides({"model.width": 8}).model.width == 8


@pytest.mark.parametrize(
    "override,match",
    [
        ({"train.epoch": 3}, "unknown config key"),
        ({"nothing": 1}, "unknown config key"),
        ({"train.epochs": "many"}, "wrong type"),
        ({"adversarial.eps": 2.0}, "outside"),
        ({"adversarial.mode": "mine"}, "paper"),
        ({"score.target_fpr": 0}, "target_fpr"),
    ],
)
def test_bad_overrides_are_rejected_with_the_key_named(override, match):
    with pytest.raises(ConfigError, match=match):
        CobraConfig().with_overrides(override)


def test_unknown_preset_lists_available_ones():
    with pytest.raises(ConfigError, match="cpu-small"):
        CobraConfig.from_preset("no-such-preset")


def test_config_round_trips_through_dict():
    config = CobraConfig.from_preset("cpu-small")
    assert CobraConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    assert "adversarial.eps" in config_keys(CobraConfig)


def test_hostile_config_files_are_refused_before_they_are_expanded(tmp_path):
    import time

    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},'
              f'*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]' for i in range(8)]
    bomb.write_text("\n".join(lines) + "\n")  # 10 * 9^8: about 430 million strings once expanded
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors or aliases"):
        CobraConfig.from_yaml(bomb)
    assert time.perf_counter() - started < 5
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="bytes; a robustad config"):
        CobraConfig.from_yaml(big)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {epochs: [1\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as err:
        CobraConfig.from_yaml(broken)
    assert "\n" not in str(err.value)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("train:\n  device: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        CobraConfig.from_yaml(latin)
    good = tmp_path / "good.yaml"
    good.write_text("base: cpu-small\ntrain:\n  epochs: 2\n")
    assert CobraConfig.from_yaml(good).train.epochs == 2


def test_the_budget_is_the_part_of_every_preset_that_all_methods_share():
    from robustad.config import Budget

    for name in list_presets():
        budget, cobra = Budget.from_preset(name), CobraConfig.from_preset(name)
        assert budget.image_size == cobra.image_size, name
        assert (budget.model.width, budget.model.stem) == (cobra.model.width, cobra.model.stem), name
        assert budget.train == cobra.train and budget.evaluation == cobra.evaluation, name
        assert (budget.score.holdout_fraction, budget.score.target_fpr, budget.score.batch_size) == (
            cobra.score.holdout_fraction, cobra.score.target_fpr, cobra.score.batch_size), name


def test_the_budget_reads_a_users_file_and_ignores_what_only_cobra_has(tmp_path):
    from robustad.config import Budget

    path = tmp_path / "mine.yaml"
    path.write_text("base: textures-cpu\nimage_size: 48\nloss: {temperature: 0.2}\nscore: {views: 4, target_fpr: 0.01}\n")
    budget = Budget.from_preset(str(path))
    assert budget.image_size == 48 and budget.score.target_fpr == 0.01
    assert budget.evaluation.eps == CobraConfig.from_preset("textures-cpu").evaluation.eps
    path.write_text("base: textures-cpu\ntrain: {epochs: 0}\n")
    with pytest.raises(ConfigError, match="train.epochs"):
        Budget.from_preset(str(path))
