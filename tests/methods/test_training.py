"""Training loop: learning-rate schedule, atomic checkpoints, and resuming an interrupted run."""

import pytest
import torch

from robustad.errors import CheckpointError
from robustad.methods.cobra.config import CobraConfig
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.training import CHECKPOINT_NAME, learning_rate, train
from robustad.models.heads import ShiftContrastiveNet
from robustad.provenance import RunRecord
from robustad.transforms import LightViews, PseudoAnomalySet

RUN = RunRecord(method="fp")  # any fixed run identity


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [learning_rate(s, 100, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.001


def _setup(seed=0):
    config = CobraConfig().with_overrides(
        {"train.epochs": 3, "train.batch_size": 8, "train.steps_per_epoch": 2, "adversarial.steps": 1}
    )
    torch.manual_seed(seed)
    pseudo = PseudoAnomalySet(["rotation"])
    net = ShiftContrastiveNet(1, 4, width=4, projection_dim=8)
    return config, CobraObjective(net, pseudo, LightViews(), config.loss, config.adversarial)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    images = torch.rand(16, 1, 8, 8)
    config, objective = _setup()
    train(objective, images, config.train, torch.device("cpu"), tmp_path / "full", RUN, progress=False)
    reference = {k: v.clone() for k, v in objective.net.state_dict().items()}

    config, objective = _setup()
    real_step, calls = objective.step, {"n": 0}

    def crash_in_epoch_three(x, g):
        calls["n"] += 1
        if calls["n"] == 5:  # the first step of the third epoch
            raise KeyboardInterrupt
        return real_step(x, g)

    objective.step = crash_in_epoch_three
    with pytest.raises(KeyboardInterrupt):
        train(objective, images, config.train, torch.device("cpu"), tmp_path / "cut", RUN, progress=False)
    assert (tmp_path / "cut" / CHECKPOINT_NAME).is_file()

    config, objective = _setup(seed=99)  # different init: everything must come from the checkpoint
    report = train(objective, images, config.train, torch.device("cpu"), tmp_path / "cut", RUN, progress=False)
    assert report.resumed_from_epoch == 2
    assert [h["epoch"] for h in report.history] == [1, 2, 3]
    for key, value in objective.net.state_dict().items():
        assert torch.allclose(value, reference[key], atol=1e-6), key


def test_checkpoint_of_another_run_is_refused_and_the_message_names_what_differs(tmp_path):
    images = torch.rand(16, 1, 8, 8)
    config, objective = _setup()
    config.train.epochs = 1
    run = RunRecord.of_training("cobra", config.to_dict(), images)
    train(objective, images, config.train, torch.device("cpu"), tmp_path, run, progress=False)
    for other, change in [(RunRecord.of_training("cobra", config.to_dict(), images.flip(0)), r"images.digest: \w+ -> \w+"),
                          (RunRecord.of_training("cobra", {**config.to_dict(), "image_size": 8}, images),
                           "config.image_size: None -> 8")]:
        with pytest.raises(CheckpointError, match=rf"another training run \({change}\).*delete the checkpoint"):
            train(objective, images, config.train, torch.device("cpu"), tmp_path, other, progress=False)
    # the same identity from the same images resumes (here: finds the run finished)
    same = RunRecord.of_training("cobra", config.to_dict(), images.clone())
    assert train(objective, images, config.train, torch.device("cpu"), tmp_path, same, progress=False).epochs == 1


def test_corrupt_checkpoint_is_reported(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a safetensors file")
    config, objective = _setup()
    with pytest.raises(CheckpointError, match="not a readable"):
        train(objective, torch.rand(16, 1, 8, 8), config.train, torch.device("cpu"), tmp_path, RUN, progress=False)


def _rewrite(path, edit_tensors=None, edit_state=None, keep_checksum=True, recompute=False):
    """Rewrite a training checkpoint with an edit, as a person or a broken tool might."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from robustad.methods.training import _state_digest

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
    tensors = load_file(str(path))
    state = json.loads(meta["robustad_train_state"])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_state:
        edit_state(state)
    meta["robustad_train_state"] = json.dumps(state)
    if recompute:
        meta["robustad_train_sha256"] = _state_digest(tensors, meta["robustad_train_state"])
    if not keep_checksum:
        del meta["robustad_train_sha256"]
    save_file(tensors, str(path), metadata=meta)


def _scale_one_weight(tensors):
    key = next(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())
    tensors[key] = tensors[key] * 1.0001


@pytest.mark.parametrize("edit, message", [
    (dict(edit_tensors=_scale_one_weight), "do not match the checksum"),
    (dict(edit_state=lambda s: s.update(epoch=99)), "do not match the checksum"),
    (dict(keep_checksum=False), "has no checksum"),
    (dict(edit_state=lambda s: s.update(epoch=99), recompute=True), "epoch 99 is not a whole number from 1"),
    (dict(edit_state=lambda s: s.update(epoch=-5), recompute=True), "epoch -5"),
    (dict(edit_state=lambda s: s.update(history="x"), recompute=True), "history should list"),
    (dict(edit_state=lambda s: s.update(optimizer_scalars={"0.step": "many"}), recompute=True), "optimizer scalars"),
    (dict(edit_tensors=lambda t: t.update({"rng.order": t["rng.order"][:7]}), recompute=True), "do not fit this run"),
    (dict(edit_tensors=lambda t: t.pop("rng.generator"), recompute=True), "do not fit this run"),
    (dict(edit_tensors=lambda t: t.update({k: v[:1] for k, v in t.items() if k.startswith("model.") and v.ndim > 1}),
          recompute=True), "do not fit this run"),
])
def test_an_edited_or_damaged_training_checkpoint_is_refused_in_one_line(tmp_path, edit, message):
    images = torch.rand(16, 1, 8, 8)
    config, objective = _setup()
    config.train.epochs = 2
    train(objective, images, config.train, torch.device("cpu"), tmp_path, RUN, progress=False)
    _rewrite(tmp_path / CHECKPOINT_NAME, **edit)
    config, objective = _setup()
    config.train.epochs = 2
    with pytest.raises(CheckpointError, match=message) as err:
        train(objective, images, config.train, torch.device("cpu"), tmp_path, RUN, progress=False)
    assert "\n" not in str(err.value) and "delete it" in str(err.value)


def test_a_time_limit_pauses_at_epoch_boundaries_and_resuming_gives_the_same_weights(tmp_path):
    import time

    from robustad.errors import TrainingPaused
    from robustad.methods.training import training_deadline

    images = torch.rand(16, 1, 8, 8)
    config, objective = _setup()
    train(objective, images, config.train, torch.device("cpu"), tmp_path / "full", RUN, progress=False)
    reference = {k: v.clone() for k, v in objective.net.state_dict().items()}

    run = tmp_path / "paused"
    for expected_epoch in (1, 2):  # a deadline already past: one epoch per call, then a checkpoint
        # a resumed call starts from another init: everything must come from the checkpoint
        config, objective = _setup(seed=0 if expected_epoch == 1 else 99)
        with training_deadline(time.time() - 1), pytest.raises(TrainingPaused) as paused:
            train(objective, images, config.train, torch.device("cpu"), run, RUN, progress=False)
        assert (paused.value.epoch, paused.value.epochs) == (expected_epoch, 3)
        assert paused.value.checkpoint == run / CHECKPOINT_NAME and paused.value.checkpoint.is_file()
        assert "run the same command again" in str(paused.value)
    config, objective = _setup(seed=99)
    with training_deadline(time.time() + 3600):  # room for the last epoch: no pause
        report = train(objective, images, config.train, torch.device("cpu"), run, RUN, progress=False)
    assert report.resumed_from_epoch == 2 and [h["epoch"] for h in report.history] == [1, 2, 3]
    for key, value in objective.net.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_the_last_epoch_finishes_even_past_the_deadline_and_a_limit_needs_a_run_folder(tmp_path):
    import time

    from robustad.errors import ConfigError
    from robustad.methods.training import training_deadline

    images = torch.rand(16, 1, 8, 8)
    config, objective = _setup()
    config.train.epochs = 1
    with training_deadline(time.time() - 1):
        assert train(objective, images, config.train, torch.device("cpu"), tmp_path, RUN, progress=False).epochs == 1
        with pytest.raises(ConfigError, match="needs a run folder"):
            train(objective, images, config.train, torch.device("cpu"), None, RUN, progress=False)
    # outside the block there is no limit again
    assert train(objective, images, config.train, torch.device("cpu"), None, RUN, progress=False).epochs == 1


def test_a_non_finite_loss_stops_training_with_a_clear_error_and_leaves_the_weights(tmp_path):
    from robustad.errors import RobustADError

    images = torch.rand(16, 1, 8, 8)
    config, objective = _setup()
    before = {k: v.detach().clone() for k, v in objective.net.named_parameters()}
    real_step = objective.step
    objective.step = lambda x, g: (real_step(x, g)[0] * float("nan"), {"loss": float("nan")})
    with pytest.raises(RobustADError, match=r"loss became nan at epoch 1, step 1 .*lower train.lr"):
        train(objective, images, config.train, torch.device("cpu"), tmp_path, RUN, progress=False)
    for key, value in objective.net.named_parameters():  # the step was not applied
        assert torch.equal(value, before[key]), key


def test_training_settings_are_checked():
    from robustad.errors import ConfigError

    config, _ = _setup()
    with pytest.raises(ConfigError, match="train.checkpoint_every must be >= 1"):
        config.with_overrides({"train.checkpoint_every": 0})
