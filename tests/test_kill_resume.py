"""kill -9 during training, then the same command again: the detector is the uninterrupted run's, byte for byte.

Three deaths: inside the checkpoint write (the temporary file written, not yet renamed), right after
the first checkpoint lands, and at whatever point a timer hits. Each run is a real process killed
with SIGKILL, so nothing of Python's clean-up runs.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

ARGS = ["train", "--data", "digits", "--normal-class", "0", "--method", "cobra", "--quiet",
        "--set", "model.width=4", "--set", "model.projection_dim=16", "--set", "train.epochs=4",
        "--set", "train.steps_per_epoch=3", "--set", "train.batch_size=16", "--set", "adversarial.steps=1"]

# dies by SIGKILL on the second rename of a training checkpoint: after its temporary file is complete
KILL_IN_WRITE = """
import os, signal, sys
import robustad.files as files
real_replace, seen = os.replace, []
def replace(src, dst, *a, **k):
    if str(dst).endswith("train_state.safetensors"):
        seen.append(dst)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **k)
files.os.replace = replace
from robustad.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(out, prefix=None):
    command = [sys.executable, *(prefix or ["-m", "robustad"]), *ARGS, "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "det"
    assert _train(out).returncode == 0
    return (out / "detector.safetensors").read_bytes()


def _resume_matches(out, uninterrupted):
    second = _train(out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (out / "detector.safetensors").read_bytes() == uninterrupted
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and "tmp" in p.name]  # no leftovers


def test_killed_inside_the_checkpoint_write(tmp_path, uninterrupted):
    out = tmp_path / "det"
    first = _train(out, prefix=["-c", KILL_IN_WRITE])
    assert first.returncode == -signal.SIGKILL
    assert (out / "train_state.safetensors").is_file() and not (out / "detector.safetensors").exists()
    _resume_matches(out, uninterrupted)


@pytest.mark.parametrize("when", ["first-checkpoint", "timer"])
def test_killed_mid_run(tmp_path, uninterrupted, when):
    out = tmp_path / "det"
    proc = subprocess.Popen([sys.executable, "-m", "robustad", *ARGS, "--out", str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    if when == "first-checkpoint":
        while not (out / "train_state.safetensors").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
    else:
        time.sleep(4.0)  # somewhere in start-up, data loading or training
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    _resume_matches(out, uninterrupted)
