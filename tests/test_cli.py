"""The commands a user types, run in-process through robustad.cli.main."""

import csv
import json

import pytest

from robustad.cli import main
from robustad.data.datasets import load_split
from robustad.data.folder import save_image

# COBRA, named: these tests are about the command line around COBRA's settings (small images
# default to the COBRA + pixel-kNN ensemble, tested in test_cli_formats.py and tests/methods)
TINY_SET = ["--method", "cobra", "--set", "model.width=4", "--set", "model.projection_dim=16", "--set", "train.epochs=1",
            "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=16", "--set", "adversarial.steps=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "det"
    code = main(["train", "--data", "digits", "--normal-class", "0", "--out", str(out), "--quiet", *TINY_SET])
    assert code == 0
    return out


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("train", "evaluate", "score", "demo", "data"):
        assert command in text


@pytest.mark.parametrize("command", ["train", "evaluate", "score", "demo"])
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "usage" in capsys.readouterr().out


def test_train_writes_a_loadable_detector(trained):
    assert (trained / "detector.json").is_file() and (trained / "detector.safetensors").is_file()
    meta = json.loads((trained / "detector.json").read_text())
    assert meta["config"]["train"]["epochs"] == 1


def test_train_again_loads_the_finished_run(trained, capsys):
    assert main(["train", "--data", "digits", "--normal-class", "0", "--out", str(trained), "--quiet", *TINY_SET]) == 0
    err = capsys.readouterr().err
    assert "loading it instead" in err and "loaded; it was trained in" in err


def test_two_detectors_of_one_name_are_refused(trained, capsys):
    assert main(["evaluate", "--detector", f"a={trained}", "--detector", f"a={trained}", "--data", "digits"]) == 2
    assert "two detectors are named 'a'" in capsys.readouterr().err


def test_train_again_with_another_config_refuses_the_finished_run(trained, capsys):
    before = (trained / "detector.safetensors").read_bytes()
    args = ["train", "--data", "digits", "--normal-class", "0", "--out", str(trained), "--quiet", *TINY_SET]
    assert main([*args, "--set", "train.lr=0.05"]) == 2
    err = capsys.readouterr().err
    assert "another config" in err and "train.lr: 0.1 -> 0.05" in err and "Move or delete" in err
    assert main([*args, "--method", "deep-svdd"]) == 2  # another method is another detector too
    assert "method: cobra -> deep-svdd" in capsys.readouterr().err
    assert (trained / "detector.safetensors").read_bytes() == before  # nothing overwritten


def test_train_again_on_other_images_refuses_the_finished_run(trained, capsys):
    before = (trained / "detector.safetensors").read_bytes()
    args = ["train", "--data", "digits", "--out", str(trained), "--quiet", *TINY_SET]
    for other in (["--normal-class", "1"], ["--normal-class", "0", "--max-train", "50"],
                  ["--normal-class", "0", "--data-seed", "1", "--max-train", "100"]):
        assert main([*args, *other]) == 2, other
        err = capsys.readouterr().err
        assert "trained on other images than these" in err and "Move or delete" in err, other
    assert (trained / "detector.safetensors").read_bytes() == before


def test_an_interrupted_run_does_not_resume_on_other_images(tmp_path, capsys):
    args = ["train", "--data", "digits", "--out", str(tmp_path / "det"), "--quiet", *TINY_SET,
            "--set", "train.epochs=2", "--set", "train.warmup_epochs=0"]
    assert main([*args, "--normal-class", "0", "--time-limit", "0"]) == 3  # one epoch of digit 0, checkpointed
    capsys.readouterr()
    assert main([*args, "--normal-class", "7"]) == 2
    err = capsys.readouterr().err
    assert "belongs to another training run (images." in err and "images.digest:" in err and "delete the checkpoint" in err


def test_train_again_loads_a_run_saved_before_a_config_section_existed(trained, tmp_path, capsys, reseal):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained, old)
    meta = json.loads((old / "detector.json").read_text())
    del meta["config"]["evaluation"]  # as written before robustad had that section
    reseal(old, meta)
    assert main(["train", "--data", "digits", "--normal-class", "0", "--out", str(old), "--quiet", *TINY_SET]) == 0
    assert "loading it instead" in capsys.readouterr().err


def test_evaluate_writes_reports(trained, tmp_path):
    out = tmp_path / "eval"
    code = main(["evaluate", "--detector", f"tiny={trained}", "--data", "digits", "--normal-class", "0",
                 "--max-test", "40", "--steps", "2", "--eps", "8/255", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    method = report["methods"]["tiny"]
    assert {"auroc_clean", "auroc_attack", "attack"} <= set(method)
    assert method["attack"]["steps"] == 2 and method["attack"]["target"] == "both"
    md = (out / "report.md").read_text()
    assert md.startswith("# robustad report")
    # the report describes the test set it used, not a training split these detectors never saw,
    # and names each detector's own training set
    assert report["title"] == report["data"]["description"] == (
        "digits normal classes [0]: test 40 images (20 normal, 20 anomalous; 1x8x8)")
    fit = method["fit_info"]
    assert f"Trained on {fit['num_train']} normal images (and {fit['num_holdout']} more held out" in md
    assert (out / "histograms.png").stat().st_size > 1000


def test_score_folder_to_csv(trained, tmp_path):
    split = load_split("digits", [0], max_test=6)
    for i, image in enumerate(split.test):
        save_image(image, tmp_path / "imgs" / f"{i}.png")
    out = tmp_path / "scores.csv"
    assert main(["score", "--detector", str(trained), str(tmp_path / "imgs"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and set(rows[0]) == {"path", "score", "anomalous", "normalized_score"}
    assert all(r["anomalous"] in ("0", "1") for r in rows)
    # the normalised score sits on the same side of 0.5 as the decision, and matches the API's
    assert all((float(r["normalized_score"]) > 0.5) == (r["anomalous"] == "1") for r in rows)
    from robustad.data.folder import load_images
    from robustad.methods.registry import load_detector

    images, files = load_images(tmp_path / "imgs")
    assert [r["path"] for r in rows] == [str(f) for f in files]
    api = load_detector(trained).normalized_score(images).tolist()
    assert [float(r["normalized_score"]) for r in rows] == pytest.approx(api, abs=2e-6)


def test_score_refuses_to_decide_on_scores_that_are_not_finite(trained, tmp_path, capsys, reseal):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    tensors = load_file(str(broken / "detector.safetensors"))
    tensors = {k: v.fill_(float("nan")) if k.endswith("stem.0.weight") else v for k, v in tensors.items()}
    save_file(tensors, str(broken / "detector.safetensors"))
    reseal(broken)  # checksums made to match: only the scores can show the damage
    folder = tmp_path / "imgs"
    for i, image in enumerate(load_split("digits", [0], max_test=4).test):
        save_image(image, folder / f"{i}.png")
    assert main(["score", "--detector", str(broken), str(folder), "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "no finite score for 4 of 4 images" in err and "weights are probably damaged" in err
    assert not (tmp_path / "s.csv").exists()


def test_score_reports_wrong_channels_and_size(trained, tmp_path, capsys):
    import torch

    save_image(torch.rand(3, 8, 8), tmp_path / "rgb.png")
    assert main(["score", "--detector", str(trained), str(tmp_path / "rgb.png")]) == 2
    assert "1-channel" in capsys.readouterr().err
    save_image(torch.rand(1, 10, 10), tmp_path / "big" / "a.png")
    assert main(["score", "--detector", str(trained), str(tmp_path / "big")]) == 2
    assert "resize" in capsys.readouterr().err
    assert main(["score", "--detector", str(trained), "--resize", str(tmp_path / "big")]) == 0


@pytest.mark.parametrize(
    "argv,match",
    [
        (["evaluate", "--detector", "/nonexistent", "--data", "digits"], "not a robustad detector"),
        (["train", "--data", "digits", "--normal-class", "12", "--out", "x"], "12"),
        (["train", "--data", "digits", "--out", "x", "--set", "adversarial.eps=3"], "outside"),
        (["train", "--data", "folder", "--normal-dir", "/nonexistent", "--out", "x"], "nonexistent"),
        (["score", "--detector", "/nonexistent", "a.png"], "not a robustad detector"),
    ],
)
def test_user_errors_exit_2_with_a_message(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and match in err and "Traceback" not in err


def test_time_limit_pauses_training_with_exit_3_and_the_same_command_resumes(tmp_path, capsys):
    args = ["train", "--data", "digits", "--normal-class", "0", "--out", str(tmp_path / "det"), "--quiet",
            *TINY_SET, "--set", "train.epochs=2", "--set", "train.warmup_epochs=0"]
    assert main([*args, "--time-limit", "0"]) == 3  # one epoch, a checkpoint, then a clean stop
    err = capsys.readouterr().err
    assert "paused: training stopped after epoch 1 of 2" in err and "run the same command again" in err
    assert (tmp_path / "det" / "train_state.safetensors").is_file()
    assert not (tmp_path / "det" / "detector.json").exists()
    assert main([*args, "--time-limit", "60"]) == 0
    assert "resuming from" in capsys.readouterr().err and (tmp_path / "det" / "detector.json").is_file()


@pytest.mark.parametrize("value", ["-1", "abc", "nan"])
def test_time_limit_must_be_minutes(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "digits", "--out", "x", "--time-limit", value])
    assert exit_info.value.code == 2 and "time limit is in minutes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "--data", "digits", "--out", "afile"], "cannot write into afile: a file is in the way (afile is a file"),
        (["train", "--data", "digits", "--out", "afile/det"], "cannot write into afile/det: a file is in the way (afile is a file"),
        (["evaluate", "--detector", "DET", "--data", "digits", "--out", "afile"], "afile is a file, not a folder"),
        (["score", "--detector", "DET", "imgs", "--out", "imgs"], "--out imgs is a folder; give a file name"),
        (["score", "--detector", "DET", "imgs", "--out", "afile/s.csv"], "afile is a file"),
        (["benchmark", "--suite", "cpu-quick", "--out", "afile", "--dry-run"], "afile is a file"),
        (["demo", "--out", "afile"], "afile is a file"),
        (["train", "--data", "digits", "--out", "x", "--set", "train.device=tpu"], "train.device must be auto, cpu"),
        (["benchmark", "--suite", "cpu-quick", "--methods", "cobra", "--set", "train.epochs=abc", "--out", "b"],
         "cobra on mnist: "),
        (["benchmark", "--suite", "cpu-quick", "--max-test", "1", "--dry-run", "--out", "b"],
         "--max-test must be at least 2"),
    ],
)
def test_output_and_setting_mistakes_are_caught_before_any_work(argv, match, trained, tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    folder = tmp_path / "imgs"
    for i, image in enumerate(load_split("digits", [0], max_test=2).test):
        save_image(image, folder / f"{i}.png")
    assert main([str(trained) if a == "DET" else a for a in argv]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and match in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "x" and not (tmp_path / "b" / "cells").exists()


@pytest.mark.parametrize("argv,match", [(["--seeds", "x"], "seeds are whole numbers"),
                                        (["--jobs", "0"], "must be a whole number >= 1")])
def test_benchmark_flags_are_checked_by_the_parser(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--suite", "cpu-quick", "--dry-run", *argv])
    assert exit_info.value.code == 2 and match in capsys.readouterr().err


def test_save_into_a_file_is_a_clear_error(trained, tmp_path):
    from robustad.errors import CheckpointError
    from robustad.methods.registry import load_detector

    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="a file is in the way"):
        load_detector(trained).save(tmp_path / "afile")


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", "folder", "--normal-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.lower()
    assert "empty" in err or "no image" in err


def test_folder_training_end_to_end(tmp_path):
    split = load_split("digits", [0], max_test=20)
    for i, image in enumerate(split.train[:40]):
        save_image(image, tmp_path / "good" / f"{i}.png")
    for i, image in enumerate(split.test[split.test_labels == 1][:10]):
        save_image(image, tmp_path / "bad" / f"{i}.png")
    out = tmp_path / "det"
    argv = ["train", "--data", "folder", "--normal-dir", str(tmp_path / "good"), "--abnormal-dir",
            str(tmp_path / "bad"), "--out", str(out), "--quiet", "--evaluate", "--steps", "1", *TINY_SET]
    assert main(argv) == 0
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["methods"]["cobra"]["num_test_anomalies"] == 10


def test_data_list_names_every_data_set(capsys):
    from robustad.data.registry import DATASETS

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        assert name in out


def test_data_check_says_what_is_missing(tmp_path, capsys):
    assert main(["data", "check", "mvtec", "--root", str(tmp_path / "nowhere")]) == 1
    out = capsys.readouterr().out
    assert "nowhere" in out and "train/good" in out


def test_data_check_ready(capsys):
    assert main(["data", "check", "digits"]) == 0
    assert "ready" in capsys.readouterr().out


def test_data_fetch_without_a_source_says_where_files_go(tmp_path, capsys):
    assert main(["data", "fetch", "cifar10"]) == 2
    assert "cifar-10-batches-py" in capsys.readouterr().err


def test_class_names_and_ranges_parse():
    from robustad.cli import _classes

    assert _classes("3") == [3]
    assert _classes("0-4") == [0, 1, 2, 3, 4]
    assert _classes("1,3,5") == [1, 3, 5]
    assert _classes("coat,bag") == ["coat", "bag"]
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        _classes("4-1")


def test_class_index_out_of_range_names_the_valid_range(capsys, tmp_path):
    assert main(["train", "--data", "digits", "--normal-class", "10", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "10" in err and "0..9" in err


def test_category_on_a_classification_set_is_a_class_name(capsys, tmp_path):
    assert main(["train", "--data", "digits", "--category", "nine", "--out", str(tmp_path / "o")]) == 2
    assert "no class named 'nine'" in capsys.readouterr().err


def test_normal_class_and_category_together_are_refused(capsys, tmp_path):
    assert main(["train", "--data", "digits", "--normal-class", "3", "--category", "5",
                 "--out", str(tmp_path / "o")]) == 2
    assert "takes its normal class once: --normal-class 3 or --category 5" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_data_list_one_name_and_check_folder(capsys):
    assert main(["data", "list", "mnist"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mnist ") and "fashion-mnist" not in out
    assert main(["data", "check", "folder"]) == 2
    assert "read when used" in capsys.readouterr().err


def test_anomalib_spellings_are_aliases(trained, tmp_path):
    """--model for --method, predict for score, --normal-test-dir for --test-normal-dir."""
    from robustad.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "folder", "--normal-dir", "n", "--normal-test-dir", "t",
                              "--model", "pixel-knn", "--out", "o"])
    assert (args.method, args.test_normal_dir) == ("pixel-knn", "t")
    split = load_split("digits", [0], max_test=4)
    for i, image in enumerate(split.test):
        save_image(image, tmp_path / "imgs" / f"{i}.png")
    for command in ("score", "predict"):
        out = tmp_path / f"{command}.csv"
        assert main([command, "--detector", str(trained), str(tmp_path / "imgs"), "--out", str(out)]) == 0
    assert (tmp_path / "score.csv").read_text() == (tmp_path / "predict.csv").read_text()


def test_score_streams_in_batches_and_skip_bad_scores_what_it_can(trained, tmp_path, capsys):
    split = load_split("digits", [0], max_test=7)
    for i, image in enumerate(split.test):
        save_image(image, tmp_path / "imgs" / f"{i}.png")
    outs = {}
    for batch in ("1", "3", "32"):
        outs[batch] = tmp_path / f"b{batch}.csv"
        assert main(["score", "--detector", str(trained), str(tmp_path / "imgs"), "--batch-size", batch,
                     "--out", str(outs[batch])]) == 0
    tables = {b: list(csv.DictReader(path.open())) for b, path in outs.items()}
    for other in ("1", "3"):  # the same rows; float32 sums may differ in the last digit between batch sizes
        assert [r["path"] for r in tables[other]] == [r["path"] for r in tables["32"]]
        assert all(abs(float(r["score"]) - float(s["score"])) <= 1e-4 * max(1.0, abs(float(s["score"])))
                   for r, s in zip(tables[other], tables["32"]))
    (tmp_path / "imgs" / "3.png").write_bytes(b"not an image")
    capsys.readouterr()
    refused = tmp_path / "refused.csv"
    assert main(["score", "--detector", str(trained), str(tmp_path / "imgs"), "--out", str(refused)]) == 2
    assert "3.png" in capsys.readouterr().err and not refused.exists()
    kept = tmp_path / "kept.csv"
    assert main(["score", "--detector", str(trained), str(tmp_path / "imgs"), "--skip-bad", "--batch-size", "3",
                 "--out", str(kept)]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "3.png" in err and "1 of 7 images could not be scored" in err
    rows = list(csv.DictReader(kept.open()))
    expected = [r for r in tables["32"] if not r["path"].endswith("3.png")]
    assert [r["path"] for r in rows] == [r["path"] for r in expected]
    assert all(abs(float(r["score"]) - float(s["score"])) <= 1e-4 * max(1.0, abs(float(s["score"])))
               for r, s in zip(rows, expected))
