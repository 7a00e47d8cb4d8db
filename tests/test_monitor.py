"""robustad train --tensorboard: the scalars a user watches in TensorBoard, read back from the event files."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robustad.cli import main
from tests.test_cli import TINY_SET


def _scalars(folder):
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_train_writes_losses_rate_and_auroc_to_tensorboard(tmp_path):
    out, board = tmp_path / "det", tmp_path / "board"
    assert main(["train", "--data", "digits", "--normal-class", "0", "--out", str(out), "--quiet", *TINY_SET,
                 "--tensorboard", str(board), "--evaluate", "--eps", "8/255", "--steps", "2"]) == 0
    scalars = _scalars(board)
    history = json.loads((out / "detector.json").read_text())["fit_info"]["history"]
    steps = 2  # TINY_SET: one epoch of two steps
    for term in ("loss", "l_cl", "l_opp"):
        assert [s for s, _ in scalars[f"train/{term}"]] == list(range(1, steps + 1))
        assert scalars[f"epoch/{term}"] == [(1, scalars[f"epoch/{term}"][0][1])]
        assert abs(scalars[f"epoch/{term}"][0][1] - history[0][term]) < 1e-5
    assert all(v > 0 for _, v in scalars["train/lr"]) and scalars["epoch/images_per_second"][0][1] > 0
    report = json.loads((out / "eval" / "report.json").read_text())["methods"]["cobra"]
    assert abs(scalars["eval/auroc_clean"][0][1] - report["auroc_clean"]) < 1e-6
    assert abs(scalars["eval/auroc_attacked"][0][1] - report["auroc_attack"]) < 1e-6


def test_tensorboard_is_off_unless_asked_and_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "det"
    assert main(["train", "--data", "digits", "--normal-class", "0", "--out", str(out), "--quiet", *TINY_SET]) == 0
    assert not list(tmp_path.rglob("events.out.tfevents*"))
    (tmp_path / "afile").write_text("x")
    assert main(["train", "--data", "digits", "--normal-class", "0", "--out", str(tmp_path / "d2"), "--quiet",
                 *TINY_SET, "--tensorboard", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err
