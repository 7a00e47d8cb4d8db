"""The scripts in benchmarks/ that BENCHMARKS.md quotes: each must still import and parse its arguments.

They are not part of the package, so nothing else would notice when a rename in robustad breaks one.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def _script(name: str):
    """A benchmark script, imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_scripts_to_check():
    assert {p.name for p in SCRIPTS} >= {"demo_variants.py", "train_throughput.py", "texture_pseudo_anomalies.py",
                                         "compare_cells.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_imports_and_prints_its_help(script):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")


def test_train_throughput_measures_a_tiny_step():
    from robustad.methods.cobra.config import CobraConfig

    module = _script("train_throughput")
    config = CobraConfig.from_preset("cpu-small").with_overrides(
        {"model.width": 4, "train.batch_size": 4, "adversarial.steps": 1})
    assert module.measure(config, size=16, channels=1, steps=1) > 0


def test_gradient_precision_ranks_float32_above_bf16():
    from robustad.methods.cobra.config import CobraConfig

    module = _script("gradient_precision")
    config = CobraConfig.from_preset("cpu-small").with_overrides({"model.width": 8, "train.batch_size": 4})
    rows = {row["variant"]: row for row in module.measure(config, size=16, channels=1)}
    assert set(rows) == set(module.VARIANTS)
    assert rows["float32"]["loss"] == pytest.approx(rows["float32"]["loss_float64"], rel=1e-5)
    assert rows["float32"]["median_relative_error"] < 0.1 < rows["bf16-autocast"]["median_relative_error"]


def test_demo_seeds_parses_seed_lists_and_summarises():
    import argparse

    module = _script("demo_seeds")
    assert module.parse_seeds("0-2,5") == [0, 1, 2, 5]
    assert module.parse_seeds("3") == [3]
    for bad in ("a", "2-", "-1", "3-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            module.parse_seeds(bad)
    assert module._stats([1.0, 3.0]) == "2.0 +- 1.4 (min 1.0, max 3.0)"


def test_reference_cost_counts_the_input_gradient_of_an_attack_step():
    import torch

    module = _script("reference_cost")
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    forward = 2 * 2 * 8 * 8 * 8 * 3 * 9  # 2 FLOP per multiply-add, per output value and kernel weight
    with module.flop_counter() as counter:  # torch's own tracker would refuse autograd.grad on a leaf
        conv(x).sum()
    assert counter.get_total_flops() == forward
    with module.flop_counter() as counter:
        (grad,) = torch.autograd.grad(conv(x).sum(), x)
    assert counter.get_total_flops() == 2 * forward and grad.shape == x.shape


def test_score_views_counts_passes_and_averages_per_data_set(tmp_path):
    module = _script("score_views")
    assert module.parse_setting("10:all") == (10, None)
    assert module.parse_setting("0:identity+rotate180") == (0, ["identity", "rotate180"])
    assert [module.passes(s) for s in ("10:all", "0:all", "0:identity+rotate180", "0:identity")] == [40, 4, 2, 1]
    rows = [{"cell": "mnist-0-cobra-s0", "0:all": {"clean": 0.9, "attacked": 0.8}, "10:all": {"clean": 0.7}},
            {"cell": "mnist-1-cobra-s0", "0:all": {"clean": 0.8, "attacked": 0.6}, "10:all": {"clean": 0.9}},
            {"cell": "fashion-mnist-3-cobra-s0", "0:all": {"clean": 0.5, "attacked": 0.4}, "10:all": {"clean": 0.6}}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    table = module.summarise(path).splitlines()
    assert table[0].startswith("| score (views:shifts) | passes / image | fashion-mnist clean / PGD | mnist clean")
    assert table[2] == "| 0:all | 4 | 50.0 / 40.0 (1) | 85.0 / 70.0 (2) |"
    assert table[3] == "| 10:all | 40 | 60.0 / - (1) | 80.0 / - (2) |"
