"""Thread choice, the start-up line and `robustad doctor`."""

from __future__ import annotations

import pytest
import torch

from robustad.cli import main
from robustad.errors import ConfigError
from robustad.runtime import choose_threads, describe_runtime


def test_threads_follow_the_flag_then_the_environment_then_the_free_cores(monkeypatch):
    assert choose_threads(3, environ={"OMP_NUM_THREADS": "1"}, cores=2, busy=0.0).threads == 3
    assert choose_threads(None, environ={"OMP_NUM_THREADS": "1"}, cores=8, busy=0.0).threads == 1
    idle = choose_threads(None, environ={}, cores=8, busy=0.2)
    assert idle.threads == 8 and "idle" in idle.reason
    busy = choose_threads(None, environ={}, cores=2, busy=1.1)
    assert busy.threads == 1 and "1.1 busy" in busy.reason
    assert choose_threads(None, environ={}, cores=2, busy=7.0).threads == 1  # never below one
    monkeypatch.setattr("robustad.runtime._busy_cores", lambda: None)  # no load average on this OS: every core
    assert choose_threads(None, environ={}, cores=4).threads == 4


@pytest.mark.parametrize("bad", ["0", "two", "-1", "99999"])
def test_a_bad_omp_num_threads_is_a_one_line_error(bad):
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS must be a whole number"):
        choose_threads(None, environ={"OMP_NUM_THREADS": bad}, cores=2, busy=0.0)


def test_the_start_line_names_versions_device_and_threads():
    line = describe_runtime(choose_threads(1))
    assert "torch " + torch.__version__ in line and "device cpu" in line and "1 torch thread (--threads" in line


def test_doctor_reports_and_changes_nothing(capsys):
    before = torch.get_num_threads()
    assert main(["doctor", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "threads       1 (--threads)" in text and "digits        ready" in text and "torch" in text
    assert torch.get_num_threads() == before


def test_a_command_says_its_threads_on_stderr_and_restores_the_caller_s(tmp_path, capsys):
    before = torch.get_num_threads()
    code = main(["train", "--data", "digits", "--normal-class", "0", "--out", str(tmp_path / "d"), "--threads", "1",
                 "--method", "image-stats"])
    assert code == 0
    assert "1 torch thread (--threads; --threads N to change)" in capsys.readouterr().err
    assert torch.get_num_threads() == before
