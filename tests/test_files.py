"""Results are written whole and in place: never through a planted link, never half, errors in one line."""

import errno
import os

import pytest

from robustad.cli import main
from robustad.data.datasets import load_split
from robustad.data.folder import save_image
from robustad.errors import OutputError
from robustad.files import atomic_open, atomic_write
from robustad.methods.reference.detector import PixelKNN


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "out.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["out.json"]


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out" / "scores.csv"
    target.parent.mkdir()
    target.symlink_to(victim)
    atomic_write(target, "scores")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_text() == "scores"


def test_an_error_inside_the_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_a_full_disk_is_one_clear_error_and_the_old_file_stays(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_text("old")

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="no space left to write .*out.csv; free some disk space"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.csv"]


@pytest.fixture(scope="module")
def reference_detector(tmp_path_factory):
    split = load_split("digits", [0], max_test=8, seed=0)
    folder = tmp_path_factory.mktemp("det") / "det"
    PixelKNN.from_preset("cpu-small").fit(split.train, progress=False).save(folder)
    images = tmp_path_factory.mktemp("imgs")
    for i, image in enumerate(split.test):
        save_image(image, images / f"{i}.png")
    return folder, images


def test_links_planted_at_the_old_temporary_names_are_left_alone(reference_detector, tmp_path):
    """score's CSV and a detector's files used to go through predictable temporary names."""
    folder, images = reference_detector
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "scores.csv"
    (tmp_path / ".scores.csv.partial").symlink_to(victim)
    assert main(["score", "--detector", str(folder), str(images), "--out", str(out)]) == 0
    assert out.read_text().startswith("path,score")
    saved = tmp_path / "copy"
    saved.mkdir()
    for name in ("detector.json.tmp", "detector.safetensors.tmp"):
        (saved / name).symlink_to(victim)
    PixelKNN.load(folder).save(saved)
    assert PixelKNN.load(saved).threshold_ == PixelKNN.load(folder).threshold_
    assert victim.read_text() == "precious"


def _plant_lock(path, pid):
    import json
    import socket

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-12-01T00:00:00+00:00"}))


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_command_writing_into_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "det"
    _plant_lock(out / ".robustad.lock", os.getpid())  # a live robustad process holds the folder
    argv = ["train", "--data", "digits", "--normal-class", "0", "--method", "pixel-knn", "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"is in use by another robustad command (process {os.getpid()}, started 2026-12-01" in err
    assert "choose another --out for this training" in err
    assert not (out / "detector.json").exists()
    _plant_lock(out / ".robustad.lock", _dead_pid())  # its process is gone: the lock is taken over
    assert main(argv) == 0
    assert (out / "detector.json").exists() and not (out / ".robustad.lock").exists()


def test_two_scores_into_one_csv_are_refused_but_other_csvs_in_the_folder_are_not(reference_detector, tmp_path, capsys):
    folder, images = reference_detector
    _plant_lock(tmp_path / ".a.csv.robustad.lock", os.getpid())
    assert main(["score", "--detector", str(folder), str(images), "--out", str(tmp_path / "a.csv")]) == 2
    assert "in use by another robustad command" in capsys.readouterr().err
    assert main(["score", "--detector", str(folder), str(images), "--out", str(tmp_path / "b.csv")]) == 0
    assert sorted(os.listdir(tmp_path)) == [".a.csv.robustad.lock", "b.csv"]


def test_an_unrelated_oserror_inside_the_block_is_not_blamed_on_the_target(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(FileNotFoundError):
        with atomic_open(target) as handle:
            handle.write((tmp_path / "missing-input.txt").read_text())
    assert os.listdir(tmp_path) == []


def test_leftover_temporaries_of_a_killed_writer_are_cleared_and_nothing_else(tmp_path):
    import json
    import os
    import socket

    from robustad.files import LOCK_FILE, folder_lock

    ours = [tmp_path / ".train_state.safetensors.ab12cd_9.tmp", tmp_path / ".detector.json.zzzzzzzz.tmp"]
    others = [tmp_path / ".notes.tmp", tmp_path / ".data.bin.abcdefgh.tmp", tmp_path / "detector.json.abcdefgh.tmp",
              tmp_path / ".scores.csv.live0000.tmp"]
    for path in ours + others:
        path.write_bytes(b"half")
    (tmp_path / ".report.md.link0000.tmp").symlink_to(tmp_path / ".notes.tmp")
    # a CSV another live command is writing (its own lock held by this process) keeps its temporary file
    (tmp_path / f".scores.csv{LOCK_FILE}").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with folder_lock(tmp_path, "test"):
        pass
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in others) and (tmp_path / ".report.md.link0000.tmp").is_symlink()
