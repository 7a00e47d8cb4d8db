"""The catastrophic-overfitting guard of few-step adversarial training (FGSM-RS)."""

import pytest
import torch

from robustad.errors import ConfigError
from robustad.methods.adversarial import OverfitGuard, default_step_size, pgd_ascend_loss
from robustad.methods.cobra.config import CobraConfig
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.training import CHECKPOINT_NAME, train
from robustad.models.heads import ShiftContrastiveNet
from robustad.provenance import RunRecord
from robustad.transforms import LightViews, PseudoAnomalySet

RUN = RunRecord(method="fp")  # any fixed run identity


def test_one_step_from_a_random_start_uses_fgsm_rs_step_size():
    assert default_step_size(0.1, 1) == pytest.approx(0.125)
    assert default_step_size(0.1, 10) == pytest.approx(0.025)
    # with 1.25 eps the random start still matters: not every pixel ends on the budget's corner
    x = torch.full((1, 1, 8, 8), 0.5)
    x_adv = pgd_ascend_loss(lambda z: z.sum(), x, eps=0.1, steps=1, generator=torch.Generator().manual_seed(0))
    delta = (x_adv - x).flatten()
    assert delta.max() <= 0.1 + 1e-6 and (delta < 0.1 - 1e-3).any()


def _guard(values, action="fallback", drop=0.2):
    calls = {"fell_back": 0}
    figures = iter(values)
    guard = OverfitGuard(lambda g: {"pgd": next(figures)}, drop, action,
                         lambda: calls.__setitem__("fell_back", calls["fell_back"] + 1), seed=0)
    return guard, calls


def test_a_fall_below_the_best_so_far_is_a_collapse_and_a_smaller_dip_is_not():
    guard, _ = _guard([])
    verdicts = [guard.collapsed({"pgd": v}) for v in (0.3, 0.6, 0.45, 0.7)]
    assert verdicts == [False, False, False, False] and guard.best == 0.7
    assert guard.collapsed({"pgd": 0.49}) and guard.best == 0.7  # a collapse does not lower the best


def test_the_reaction_falls_back_or_stops_and_survives_a_checkpoint():
    guard, calls = _guard([])
    guard.collapsed({"pgd": 0.8})
    assert guard.react(3) == "fell back to multi-step adversaries" and calls["fell_back"] == 1
    assert not guard.watching and not guard.stopped
    again, again_calls = _guard([])
    again.restore(guard.state())  # a resumed run re-applies the fallback
    assert again_calls["fell_back"] == 1 and again.collapsed_at == 3 and again.best == 0.8
    stopper, stop_calls = _guard([], action="stop")
    assert stopper.react(2) == "stopped" and stopper.stopped and stop_calls["fell_back"] == 0
    with pytest.raises(ValueError, match="action"):
        _guard([], action="retry")


def _setup(action, probe_values, seed=0):
    config = CobraConfig().with_overrides(
        {"train.epochs": 4, "train.batch_size": 8, "train.steps_per_epoch": 2, "adversarial.steps": 1,
         "adversarial.guard_steps": 2, "adversarial.guard_action": action})
    torch.manual_seed(seed)
    net = ShiftContrastiveNet(1, 4, width=4, projection_dim=8)
    objective = CobraObjective(net, PseudoAnomalySet(["rotation"]), LightViews(), config.loss, config.adversarial)
    figures = iter(probe_values)
    guard = OverfitGuard(lambda g: {"pgd": next(figures)}, 0.2, action, objective.fall_back, seed=0)
    return config, objective, guard


def _weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("action", ["fallback", "stop"])
def test_a_collapse_discards_that_epochs_updates_then_falls_back_or_stops(tmp_path, action):
    images = torch.rand(16, 1, 8, 8)
    # robustness after epochs 1, 2, 3: the third collapses
    config, objective, guard = _setup(action, [0.5, 0.6, 0.1, 0.6])
    after_two = {}
    real_step, steps = objective.step, {"n": 0}

    def step(x, g):
        if steps["n"] == 4:  # the first step of epoch 3: what epoch 2 left
            after_two.update(_weights(objective.net))
        steps["n"] += 1
        return real_step(x, g)

    objective.step = step
    report = train(objective, images, config.train, torch.device("cpu"), tmp_path, RUN, progress=False,
                   guard=guard)
    assert report.history[2]["guard_collapsed"] == 1.0 and report.guard["collapsed_at"] == 3
    if action == "stop":
        assert report.epochs == 3 and steps["n"] == 6
        for key, value in objective.net.state_dict().items():  # the weights from before the collapse
            assert torch.equal(value, after_two[key]), key
    else:
        assert report.epochs == 4 and steps["n"] == 8
        assert objective.steps == config.adversarial.fallback_steps and config.adversarial.steps == 1
        assert "guard_pgd" not in report.history[3]  # nothing left to guard after the fallback


def test_a_run_resumed_after_a_collapse_ends_as_the_uninterrupted_one(tmp_path):
    images = torch.rand(16, 1, 8, 8)
    config, objective, guard = _setup("fallback", [0.5, 0.1])
    train(objective, images, config.train, torch.device("cpu"), tmp_path / "full", RUN, progress=False, guard=guard)
    reference = _weights(objective.net)

    config, objective, guard = _setup("fallback", [0.5, 0.1])
    real_step, calls = objective.step, {"n": 0}

    def crash_in_epoch_four(x, g):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_step(x, g)

    objective.step = crash_in_epoch_four
    with pytest.raises(KeyboardInterrupt):
        train(objective, images, config.train, torch.device("cpu"), tmp_path / "cut", RUN, progress=False,
              guard=guard)
    assert (tmp_path / "cut" / CHECKPOINT_NAME).is_file()
    config, objective, guard = _setup("fallback", [], seed=7)  # no probe left: a resumed run must not measure
    report = train(objective, images, config.train, torch.device("cpu"), tmp_path / "cut", RUN, progress=False,
                   guard=guard)
    assert report.resumed_from_epoch == 3 and objective.steps == config.adversarial.fallback_steps
    for key, value in objective.net.state_dict().items():
        assert torch.allclose(value, reference[key], atol=1e-6), key


def test_cobra_fit_records_the_guards_figures_on_real_digits(digits_split):
    from robustad import Cobra

    det = Cobra.from_preset("digits-cpu", overrides={
        "train.epochs": 2, "train.steps_per_epoch": 2, "train.batch_size": 16, "model.width": 4,
        "adversarial.steps": 1, "adversarial.guard_steps": 3, "adversarial.guard_images": 8})
    det.fit(digits_split.train, progress=False)
    history = det.fit_info_["history"]
    for record in history:
        for key in ("guard_clean", "guard_train_attack", "guard_pgd"):
            assert 0.0 <= record[key] <= 1.0
        # PGD-3 is at least as strong as the training attack on the same images, up to the random starts
        assert record["guard_pgd"] <= record["guard_clean"]
    assert det.fit_info_["overfit_guard"]["action"] == "fallback"


@pytest.mark.parametrize("overrides, message", [
    ({"adversarial.guard_steps": -1}, "guard_steps must be >= 0"),
    ({"adversarial.guard_steps": 5, "loss.classification": False}, "shift head"),
    ({"adversarial.guard_steps": 5, "adversarial.guard_drop": 1.5}, "guard_drop"),
    ({"adversarial.guard_steps": 5, "adversarial.guard_action": "retry"}, "guard_action must be one of fallback, stop"),
    ({"adversarial.guard_steps": 5, "adversarial.fallback_steps": 0}, "fallback_steps must be >= 1"),
])
def test_guard_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        CobraConfig().with_overrides(overrides).validate()
