"""Mistakes that used to cost work or data: each is refused with one line, before the work it would waste."""

import csv
import json
import shutil

import pytest
import torch

from robustad import Cobra
from robustad.cli import main
from robustad.data.datasets import load_split
from robustad.data.folder import save_image
from robustad.errors import CheckpointError, ConfigError, InputError
from robustad.methods.registry import load_detector

TINY_SET = ["--method", "cobra", "--set", "model.width=4", "--set", "model.projection_dim=16", "--set", "train.epochs=1",
            "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=16", "--set", "adversarial.steps=1"]
# /proc takes no new folders, even from root; CI and this machine run Linux
UNWRITABLE = "/proc/robustad-no-such-folder"


def _train(out, *extra):
    assert main(["train", "--data", "digits", "--normal-class", "0", "--out", str(out), "--quiet", *TINY_SET,
                 *extra]) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("run") / "det")


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    for i, image in enumerate(load_split("digits", [0], max_test=4).test):
        save_image(image, folder / f"{i}.png")
    return folder


@pytest.fixture
def no_data_loading(monkeypatch):
    """Fail the test if a command gets as far as loading its data set."""
    import robustad.pipeline

    def refuse(spec):
        raise AssertionError("the data was loaded before the mistake was caught")

    monkeypatch.setattr(robustad.pipeline, "load_data", refuse)


def _fails(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and match in err and "Traceback" not in err, err


def test_score_will_not_write_over_an_image_or_into_the_detector(trained, images, tmp_path, capsys):
    before = (images / "0.png").read_bytes()
    _fails(["score", "--detector", str(trained), str(images), "--out", str(images / "0.png")], "names an image file",
           capsys)
    assert (images / "0.png").read_bytes() == before
    meta = (trained / "detector.json").read_text()
    _fails(["score", "--detector", str(trained), str(images), "--out", str(trained / "detector.json")],
           "inside the detector folder", capsys)
    assert (trained / "detector.json").read_text() == meta
    load_detector(trained)


def test_score_replaces_an_old_csv_whole(trained, images, tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("STALE,ROW\n" * 100)
    assert main(["score", "--detector", str(trained), str(images), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and "STALE" not in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial file left


@pytest.mark.parametrize("command", ["train", "score"])
def test_a_full_disk_mid_run_is_one_line_and_leaves_no_partial_files(command, trained, images, tmp_path, capsys,
                                                                     monkeypatch):
    import errno

    import robustad.files

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    monkeypatch.setattr(robustad.files.os, "fsync", full)
    argv = {"train": ["train", "--data", "digits", "--normal-class", "0", "--out", str(out / "det"), "--quiet", *TINY_SET],
            "score": ["score", "--detector", str(trained), str(images), "--out", str(out / "s.csv")]}[command]
    _fails(argv, "free some disk space", capsys)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert (out / "keep.txt").read_text() == "earlier result"
    assert not any(name.endswith(robustad.files.TEMP_SUFFIX) or name.endswith("s.csv") for name in left), left


def test_a_file_name_that_is_not_utf8_is_scored_and_written_with_escapes(trained, images, tmp_path, capsys):
    import os

    odd = os.fsdecode(bytes(images) + b"/caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    shutil.copy(images / "0.png", odd)
    out = tmp_path / "scores.csv"
    assert main(["score", "--detector", str(trained), str(images), "--out", str(out)]) == 0
    assert "not valid UTF-8" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 5 and any(r["path"].endswith("caf\\xe9.png") for r in rows)
    assert main(["score", "--detector", str(trained), str(images)]) == 0  # to stdout as well
    assert "caf\\xe9.png" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "evaluate", "score"])
def test_an_unwritable_out_is_refused_before_any_work(command, trained, images, capsys, monkeypatch):
    import robustad.pipeline

    monkeypatch.setattr(robustad.pipeline, "load_data", lambda spec: pytest.fail("data loaded"))
    monkeypatch.setattr(Cobra, "score", lambda self, x: pytest.fail("images scored"))
    argv = {
        "train": ["train", "--data", "digits", "--out", UNWRITABLE],
        "evaluate": ["evaluate", "--detector", str(trained), "--data", "digits", "--out", UNWRITABLE],
        "score": ["score", "--detector", str(trained), str(images), "--out", UNWRITABLE + "/s.csv"],
    }[command]
    _fails(argv, f"cannot write into {UNWRITABLE}", capsys)


def test_the_api_refuses_unwritable_folders_before_training(digits_split, tmp_path):
    det = Cobra.from_preset("cpu-small", overrides={"model.width": 4, "train.epochs": 1, "train.steps_per_epoch": 1})
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="a file is in the way"):
        det.fit(digits_split.train, run_dir=tmp_path / "afile", progress=False)
    with pytest.raises(CheckpointError, match="cannot write into"):
        det.fit(digits_split.train, run_dir=UNWRITABLE, progress=False)
    assert det.net is None or det.train_report_ is None  # nothing was trained


def test_the_trial_write_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    _fails(["train", "--data", "digits", "--normal-class", "3", "--category", "5", "--out", str(out)],
           "takes its normal class once", capsys)
    assert not (tmp_path / "a").exists()


def test_evaluate_checks_every_detector_before_attacking_any(trained, tmp_path, capsys, monkeypatch):
    other = _train(tmp_path / "rgb", "--channels", "3")
    import robustad.pipeline

    monkeypatch.setattr(robustad.pipeline, "evaluate_detectors", lambda *a, **k: pytest.fail("attacks started"))
    _fails(["evaluate", "--detector", f"a={trained}", "--detector", f"b={other}", "--data", "digits",
            "--max-test", "10", "--steps", "1", "--out", str(tmp_path / "ev")],
           "detector b: this detector was trained on 3-channel images but got 1 channel", capsys)


@pytest.mark.parametrize("setting,match", [
    ("score.batch_size=0", "score.batch_size must be >= 1"),
    ("score.bank_size=0", "score.bank_size must be >= 1"),
    ("score.bank_size=-1", "score.bank_size must be >= 1"),
    ("train.steps_per_epoch=-1", "train.steps_per_epoch must be >= 1"),
    ("train.momentum=-1", "train.momentum must be in [0, 1)"),
    ("loss.contrastive=foo", "loss.contrastive must be one of cobra, cl"),
    ("loss.temperature=0", "loss.temperature must be a finite number > 0"),
    ("train.epochs=.inf", "train.epochs=inf has the wrong type"),
    ("train.lr=1/0", "train.lr='1/0' has the wrong type"),
    ("adversarial.eps=[1]", "adversarial.eps must be a number like 8/255"),
    ("adversarial.eps=1e400", "adversarial.eps must be a number like 8/255"),
])
def test_bad_settings_are_refused_before_the_data_loads(setting, match, capsys, no_data_loading):
    _fails(["train", "--data", "digits", "--out", "never", "--set", setting], match, capsys)


@pytest.mark.parametrize("argv,match", [
    (["--data-seed", "-1"], "a seed is a whole number >= 0"),
    (["--max-train", "0"], "must be a whole number >= 1"),
    (["--max-test", "-2"], "must be a whole number >= 1"),
    (["--image-size", "100000"], "from 8 to 4096"),
    (["--steps", "0", "--evaluate"], "must be a whole number >= 1"),
])
def test_bad_numbers_are_refused_by_the_parser(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "digits", "--out", "never", *argv])
    assert exit_info.value.code == 2 and match in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    (["--eps", "abc"], "attack eps must be a number"),
    (["--eps", "1e400"], "attack eps must be a number"),
    (["--suite", "quick", "--suite-eps", ","], "--suite-eps takes budgets separated by commas"),
])
def test_evaluate_settings_are_refused_before_the_data_loads(trained, argv, match, capsys, no_data_loading):
    _fails(["evaluate", "--detector", str(trained), "--data", "digits", *argv], match, capsys)


def test_max_train_applies_to_a_training_only_folder(tmp_path, capsys):
    split = load_split("digits", [0])
    for i, image in enumerate(split.train[:12]):
        save_image(image, tmp_path / "good" / f"{i}.png")
    out = tmp_path / "det"
    assert main(["train", "--data", "folder", "--normal-dir", str(tmp_path / "good"), "--max-train", "5",
                 "--out", str(out), "--quiet", *TINY_SET]) == 0
    assert "train 5 normal images" in capsys.readouterr().err
    meta = json.loads((out / "detector.json").read_text())
    assert meta["fit_info"]["num_train"] + meta["fit_info"]["num_holdout"] == 5


def test_load_with_an_unknown_device_is_a_config_error(trained):
    for device in ("gpu", 0):
        with pytest.raises(ConfigError, match="device must be auto, cpu, cuda"):
            load_detector(trained, device=device)


def test_overrides_may_be_one_string():
    assert Cobra(overrides="train.epochs=2").config.train.epochs == 2


def test_images_without_pixels_are_an_input_error(fitted_cobra):
    with pytest.raises(InputError, match="no pixels"):
        fitted_cobra.score(torch.rand(2, 1, 0, 0))


def test_a_damaged_fit_info_is_a_checkpoint_error(trained, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    meta = json.loads((broken / "detector.json").read_text())
    meta["fit_info"] = "x"
    (broken / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="fit_info should be a mapping"):
        load_detector(broken)
    _fails(["train", "--data", "digits", "--normal-class", "0", "--out", str(broken), *TINY_SET],
           "fit_info should be a mapping", capsys)


@pytest.mark.parametrize("roles,match", [
    (["--abnormal-dir", "A", "--test-normal-dir", "A"], "cannot be both normal and anomalous"),
    (["--abnormal-dir", "N"], "cannot be both normal and anomalous"),
    (["--abnormal-dir", "A", "--test-normal-dir", "N"], "the test normals would be the training images"),
    (["--abnormal-dir", "A", "--abnormal-dir", "A/."], "given twice"),
])
def test_one_folder_in_two_roles_is_refused(roles, match, images, tmp_path, capsys):
    paths = {"N": images, "A": tmp_path / "bad"}
    shutil.copytree(images, paths["A"])
    argv = [str(paths[r[0]]) + r[1:] if r[:1] in paths else r for r in roles]
    _fails(["train", "--data", "folder", "--normal-dir", str(images), *argv, "--out", str(tmp_path / "d"), "--quiet",
            *TINY_SET], match, capsys)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_an_edited_threshold_that_is_not_finite_is_refused_on_load(trained, tmp_path, value, reseal):
    copy = tmp_path / "det"
    shutil.copytree(trained, copy)
    meta = copy / "detector.json"
    text = meta.read_text()
    threshold = json.loads(text)["threshold"]
    meta.write_text(text.replace(f'"threshold": {json.dumps(threshold)}', f'"threshold": {value}', 1))
    assert f'"threshold": {value}' in meta.read_text()
    with pytest.raises(CheckpointError, match="does not match its own checksum"):
        load_detector(copy)
    reseal(copy)  # the checksum made to match: the threshold's own check still holds
    with pytest.raises(CheckpointError, match="threshold must be a finite number"):
        load_detector(copy)


def test_a_detector_without_threshold_saves_null_and_score_says_why_columns_are_empty(images, tmp_path, capsys):
    out = _train(tmp_path / "det", "--set", "score.holdout_fraction=0")
    assert json.loads((out / "detector.json").read_text())["threshold"] is None
    assert main(["score", "--detector", str(out), str(images), "--out", str(tmp_path / "s.csv")]) == 0
    assert "has no threshold" in capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert rows and all(r["anomalous"] == "" and r["normalized_score"] == "" for r in rows)


@pytest.mark.parametrize("holdout", ["0.2", "0"])
def test_a_diverged_training_is_never_saved_as_a_finished_detector(tmp_path, capsys, holdout):
    """lr 1e30 wrecks the weights in one step: with held-out images their scores are NaN, without
    them the weights themselves are checked before anything is written."""
    out = tmp_path / "det"
    code = main(["train", "--data", "digits", "--normal-class", "0", "--out", str(out), "--quiet", *TINY_SET,
                 "--set", "train.lr=1e30", "--set", "train.steps_per_epoch=1", "--set", f"score.holdout_fraction={holdout}"])
    assert code == 2
    assert "training diverged; lower the learning rate" in capsys.readouterr().err
    assert not (out / "detector.json").exists() and not (out / "detector.safetensors").exists()


def _edit(meta, path, value):
    *parents, last = path
    for key in parents:
        meta = meta[key]
    meta[last] = value


@pytest.mark.parametrize("path,value,match", [
    (("in_channels",), -3, "in_channels should be an integer from 1 to 4"),
    (("in_channels",), 10**11, "in_channels should be an integer from 1 to 4"),
    (("image_size",), [100000, 100000], "image_size should be .* each 1 to 4096"),
    (("config", "model", "width"), 10**7, "model.width is 10000000, above the largest robustad accepts"),
    (("config", "score", "views"), 10**6, "score.views is 1000000, above the largest"),
])
def test_sizes_in_an_edited_detector_json_are_bounded_before_anything_is_built(trained, tmp_path, path, value, match,
                                                                               reseal):
    copy = tmp_path / "det"
    shutil.copytree(trained, copy)
    meta = json.loads((copy / "detector.json").read_text())
    _edit(meta, path, value)
    reseal(copy, meta)  # checksums made to match: the bounds must hold on their own
    with pytest.raises(CheckpointError, match=match):
        load_detector(copy)


def test_deeply_nested_json_and_weights_that_do_not_fit_together_are_refused(trained, tmp_path, reseal):
    from safetensors.torch import load_file, save_file

    nested = tmp_path / "nested"
    shutil.copytree(trained, nested)
    (nested / "detector.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_detector(nested)
    bank = tmp_path / "bank"
    shutil.copytree(trained, bank)
    tensors = load_file(str(bank / "detector.safetensors"))
    tensors["bank"] = torch.randn(3, 7)  # another shape, with the checksum recomputed to match
    save_file(tensors, str(bank / "detector.safetensors"))
    reseal(bank)
    with pytest.raises(CheckpointError, match="weights do not fit together"):
        load_detector(bank)


@pytest.mark.parametrize("key,value", [("model.width", 4096), ("image_size", 100000), ("score.views", 1000000)])
def test_sizes_set_on_the_command_line_are_bounded(tmp_path, capsys, key, value):
    _fails(["train", "--data", "digits", "--normal-class", "0", "--out", str(tmp_path / "d"), "--quiet", *TINY_SET,
            "--set", f"{key}={value}"], "above the largest robustad accepts", capsys)
