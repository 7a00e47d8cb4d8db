"""`robustad train --evaluate` on fixture files written in each data set's real on-disk format."""

import json

import pytest
from format_fixtures import SIDE, WRITERS, _png, cifar10, mvtec, svhn

from robustad.cli import main

TINY_SETTINGS = ["--set", "model.width=4", "--set", "model.projection_dim=16", "--set", "train.epochs=1",
                 "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=8", "--set", "adversarial.steps=1",
                 "--set", "score.batch_size=32"]
TINY = ["--method", "cobra", *TINY_SETTINGS]  # the formats' tests are about reading files, with COBRA named


FORMATS = {name: WRITERS[name] for name in ("mvtec", "visa", "dagm", "isic", "cityscapes", "folder", "cifar10",
                                            "cifar100", "svhn", "imagenet30")}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_train_and_evaluate_on_fixture_files(name, tmp_path):
    root = tmp_path / "data"
    args = FORMATS[name](root)
    out = tmp_path / "run"
    argv = ["train", "--data", name, *args, "--image-size", str(SIDE), "--out", str(out), "--quiet",
            "--evaluate", "--steps", "1", *TINY]
    if name != "folder":
        argv += ["--root", str(root)]
    assert main(argv) == 0
    report = json.loads((out / "eval" / "report.json").read_text())
    method = report["methods"]["cobra"]
    assert method["num_test_anomalies"] > 0 and 0.0 <= method["auroc_clean"] <= 1.0
    meta = json.loads((out / "detector.json").read_text())
    assert meta["image_size"] == [SIDE, SIDE]
    assert main(["evaluate", "--detector", str(out), "--data", name, *args, "--steps", "1", "--out",
                 str(tmp_path / "ev"), *(["--root", str(root)] if name != "folder" else [])]) == 0


def test_textures_train_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", "textures", "--category", "grass", "--image-size", str(SIDE), "--max-train", "40",
            "--max-test", "20", "--out", str(out), "--quiet", "--evaluate", "--steps", "1", *TINY]
    assert main(argv) == 0
    assert "semi-synthetic" in capsys.readouterr().err
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["methods"]["cobra"]["num_test_anomalies"] == 10


def test_preset_follows_the_images_not_the_layout(tmp_path, capsys):
    """The same 16 px images in MVTec's layout and as folders: the same preset, detector and scores."""
    import shutil

    mvtec(tmp_path / "d")
    runs = {}
    assert main(["train", "--data", "mvtec", "--root", str(tmp_path / "d"), "--category", "bottle",
                 "--out", str(tmp_path / "mv"), "--quiet", "--holdout", "0.2", *TINY_SETTINGS]) == 0
    err = capsys.readouterr().err
    assert "preset cpu-small" in err and "method cobra-ensemble (the default for 16 px images" in err
    runs["mvtec"] = tmp_path / "mv"
    bottle = tmp_path / "d" / "bottle"
    shutil.copytree(bottle / "train" / "good", tmp_path / "f" / "good")
    assert main(["train", "--data", "folder", "--normal-dir", str(tmp_path / "f" / "good"),
                 "--out", str(tmp_path / "fo"), "--quiet", "--holdout", "0.2", *TINY_SETTINGS]) == 0
    assert "preset cpu-small" in capsys.readouterr().err
    runs["folder"] = tmp_path / "fo"
    metas = {k: json.loads((v / "detector.json").read_text()) for k, v in runs.items()}
    assert metas["mvtec"]["config"] == metas["folder"]["config"]
    assert metas["mvtec"]["image_size"] == [SIDE, SIDE]  # never upsampled to a high-res preset's size
    assert metas["mvtec"]["fit_info"]["train_images_digest"] == metas["folder"]["fit_info"]["train_images_digest"]
    assert metas["mvtec"]["threshold"] == metas["folder"]["threshold"]


def test_large_images_get_the_layouts_high_res_preset_and_say_they_are_resized(tmp_path, capsys):
    for i in range(10):
        _png(tmp_path / "d/bottle/train/good" / f"{i:03d}.png", i, side=80)
    for i in range(2):
        _png(tmp_path / "d/bottle/test/good" / f"{i:03d}.png", 100 + i, side=80)
        _png(tmp_path / "d/bottle/test/crack" / f"{i:03d}.png", 200 + i, side=80)
    out = tmp_path / "run"
    assert main(["train", "--data", "mvtec", "--root", str(tmp_path / "d"), "--category", "bottle", "--out", str(out),
                 "--quiet", *TINY]) == 0
    err = capsys.readouterr().err
    assert "preset mvtec-cpu" in err and "resizes the 80 px images to 64x64" in err
    meta = json.loads((out / "detector.json").read_text())
    assert meta["config"]["transforms"]["pseudo_anomalies"] == ["cutpaste"] and meta["image_size"] == [64, 64]
    assert meta["config"]["evaluation"]["eps"] == pytest.approx(2 / 255)


def test_multiclass_with_anomalies_from_another_data_set(tmp_path):
    svhn(tmp_path / "svhn")
    out = tmp_path / "run"
    argv = ["train", "--data", "digits", "--normal-class", "0-9", "--ood-data", "svhn", "--ood-root",
            str(tmp_path / "svhn"), "--channels", "1", "--image-size", "8", "--max-test", "30", "--out", str(out),
            "--quiet", "--evaluate", "--steps", "1", *TINY]
    assert main(argv) == 0
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["data"]["name"] == "digits vs svhn"
    assert report["methods"]["cobra"]["num_test_anomalies"] == 15


@pytest.mark.parametrize("argv,match", [
    (["--data", "mvtec", "--category", "bottle"], "does not exist"),
    (["--data", "mvtec"], "not usable"),
    (["--data", "mvtec", "--normal-class", "3"], "categories, not numbered classes"),
    (["--data", "cifar10", "--normal-class", "11"], "out of range"),
    (["--data", "digits", "--normal-dir", "x"], "belong to --data folder"),
])
def test_format_errors_are_clear(argv, match, tmp_path, capsys):
    full = ["train", *argv, "--out", str(tmp_path / "o")]
    if "cifar10" in argv:
        cifar10(tmp_path / "c")
        full += ["--root", str(tmp_path / "c")]
    elif "mvtec" in argv:
        full += ["--root", str(tmp_path / "nowhere")]
    assert main(full) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


@pytest.mark.parametrize("method", ["csi", "deep-svdd", "knn", "at-cls", "pixel-knn", "image-stats", "cobra-ensemble"])
def test_train_other_methods_and_evaluate_them(method, tmp_path):
    out = tmp_path / method
    argv = ["train", "--data", "digits", "--normal-class", "0", "--method", method, "--out", str(out), "--quiet",
            "--max-test", "30", "--evaluate", "--steps", "1", *TINY_SETTINGS]
    assert main(argv) == 0
    meta = json.loads((out / "detector.json").read_text())
    assert meta["method"] == {"csi": "cobra", "at-cls": "cobra"}.get(method, method)
    report = json.loads((out / "eval" / "report.json").read_text())
    assert method in report["methods"]
    assert main(["evaluate", "--detector", str(out), "--data", "digits", "--normal-class", "0", "--max-test", "20",
                 "--steps", "1", "--out", str(tmp_path / "ev")]) == 0


PATCH_TINY = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=8",
              "--set", "adversarial.steps=1", "--set", "score.bank_size=300"]


def test_default_detector_on_textures_reports_anomaly_maps(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", "textures", "--category", "brick", "--max-train", "30", "--max-test", "12",
            "--out", str(out), "--quiet", "--evaluate", "--steps", "2", *PATCH_TINY]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "method cobra-patch (the default for 64 px images" in err and "false positives on new normal images" in err
    report = json.loads((out / "eval" / "report.json").read_text())
    maps = report["methods"]["cobra-patch"]["maps"]
    assert 0.5 < maps["pixel_auroc_clean"] <= 1 and 0 <= maps["pixel_auroc_attack"] <= 1
    assert (out / "eval" / maps["figure"]).stat().st_size > 10_000
    assert "pixel AUROC clean" in (out / "eval" / "report.md").read_text()


def test_mvtec_without_masks_reports_at_the_image_level(tmp_path, capsys):
    for i in range(10):
        _png(tmp_path / "d/bottle/train/good" / f"{i:03d}.png", i, side=40)
    for i in range(3):
        _png(tmp_path / "d/bottle/test/good" / f"{i:03d}.png", 100 + i, side=40)
        _png(tmp_path / "d/bottle/test/crack" / f"{i:03d}.png", 200 + i, side=40)
    out = tmp_path / "run"
    assert main(["train", "--data", "mvtec", "--root", str(tmp_path / "d"), "--category", "bottle", "--out", str(out),
                 "--quiet", "--evaluate", "--steps", "1", *PATCH_TINY]) == 0
    report = (out / "eval" / "report.md").read_text()
    assert "no defect masks: evaluated at the image level only" in report
    assert "pixel AUROC clean" not in report
    assert (out / "eval" / "maps_cobra-patch.png").is_file()
