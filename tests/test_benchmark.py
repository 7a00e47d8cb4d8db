"""The benchmark runner on scikit-learn's digits: cells, resume, subprocess cells, tables."""

import dataclasses
import json
import os

import pytest
import torch

from robustad.benchmark import BenchmarkSuite, Cell, aggregate, benchmark_suite, run_benchmark
from robustad.benchmark.suites import ALL_METHODS
from robustad.cli import main
from robustad.errors import ConfigError
from robustad.evaluation.suite import AttackSpec

TINY = {"model.width": 4, "model.projection_dim": 16, "train.epochs": 1, "train.steps_per_epoch": 2,
        "train.batch_size": 16, "adversarial.steps": 1, "train.warmup_epochs": 0}


def _tiny_suite(methods=("cobra", "deep-svdd")):
    return BenchmarkSuite(name="tiny", scale="cpu", datasets={"digits": ["0", "1"]}, methods=methods,
                          max_train=60, max_test=20, train_overrides=TINY,
                          attacks=(AttackSpec("pgd", steps=2), AttackSpec("square", queries=5)),
                          sweep_factors=(2.0,), sweep_steps=2)


def test_suites_cover_every_method_and_the_required_data():
    quick, full = benchmark_suite("cpu-quick"), benchmark_suite("cpu-full")
    assert set(ALL_METHODS) == set(quick.methods) == set(full.methods)
    assert full.datasets["mnist"] == [str(c) for c in range(10)] == full.datasets["fashion-mnist"]
    assert full.datasets["textures"] == ["brick", "grass", "gravel"]
    assert len(full.cells()) == 23 * len(ALL_METHODS)
    assert benchmark_suite("paper").scale == "paper"
    with pytest.raises(ConfigError, match="unknown benchmark suite"):
        benchmark_suite("gpu-huge")
    with pytest.raises(ConfigError, match="no data set"):
        quick.select(datasets=["cifar10"])


def test_run_resume_and_aggregate(tmp_path):
    suite = _tiny_suite()
    outcome = run_benchmark(suite, tmp_path, log=lambda m: None, in_process=True)
    assert len(outcome["done"]) == 4 and not outcome["failed"]
    record = json.loads((tmp_path / "cells" / "digits-0-cobra-s0.json").read_text())
    for key in ("auroc_clean", "auroc_attack", "eps_sweep", "train_seconds", "score_ms_per_image", "peak_rss_mb",
                "torch_threads"):
        assert record[key] is not None
    assert record["auroc_attack"] <= record["auroc_clean"] + 1e-9  # the worst case starts from the clean scores
    assert record["eps_255"] == pytest.approx(8.0) and "16/255" in record["eps_sweep"]
    assert set(record["attacks"]) >= {"pgd-2x1", "square-5"}
    again = run_benchmark(suite, tmp_path, log=lambda m: None, in_process=True)
    assert again["done"] == [] and len(again["skipped"]) == 4
    report = aggregate(tmp_path)
    text = report.read_text()
    assert "| cobra |" in text and "| deep-svdd |" in text and "Per class" in text
    assert (tmp_path / "results.csv").read_text().count("\n") == 5
    assert (tmp_path / "clean_vs_attacked.png").stat().st_size > 1000
    assert "| cobra | 2 |" in text and "different classes" not in text
    (tmp_path / "cells" / "digits-1-deep-svdd-s0.json").unlink()  # deep-svdd now has one class, cobra two
    text = aggregate(tmp_path).read_text()
    assert "| deep-svdd | 1 |" in text and "different classes" in text
    assert text.startswith("# robustad benchmark tiny\n") and "Machine: " in text
    moved = tmp_path / "cells" / "digits-0-deep-svdd-s0.json"  # a cell from another machine
    moved.write_text(json.dumps({**json.loads(moved.read_text()), "device": "cuda:0", "device_name": "Some GPU"}))
    text = aggregate(tmp_path).read_text()
    assert "Machines (times compare only within one)" in text and "Some GPU (cuda:0)" in text
    assert ": 2 cells" in text and ": 1 cells" in text


def test_a_cell_measured_with_another_config_is_stale_and_runs_again(tmp_path):
    suite = _tiny_suite(methods=("deep-svdd",)).select(classes=["0"])
    run_benchmark(suite, tmp_path, log=lambda m: None, in_process=True)
    old = json.loads((tmp_path / "cells" / "digits-0-deep-svdd-s0.json").read_text())
    changed = dataclasses.replace(suite, train_overrides={**TINY, "train.steps_per_epoch": 3})
    messages = []
    outcome = run_benchmark(changed, tmp_path, log=messages.append, in_process=True)
    assert outcome["done"] == ["digits-0-deep-svdd-s0"] and not outcome["skipped"]
    assert any("trained with another config" in m and "train.steps_per_epoch: 2 -> 3" in m for m in messages), messages
    new = json.loads((tmp_path / "cells" / "digits-0-deep-svdd-s0.json").read_text())
    assert new["config"]["train"]["steps_per_epoch"] == 3
    (kept,) = (tmp_path / "stale").iterdir()  # the old result and its training run are kept, not deleted
    assert json.loads((kept / "digits-0-deep-svdd-s0.json").read_text()) == old
    assert (kept / "runs" / "detector.json").is_file()
    assert run_benchmark(changed, tmp_path, log=lambda m: None, in_process=True)["skipped"] == ["digits-0-deep-svdd-s0"]
    # A config section added to robustad after a cell ran takes its default when read: not a change.
    path = tmp_path / "cells" / "digits-0-deep-svdd-s0.json"
    path.write_text(json.dumps({**new, "config": {k: v for k, v in new["config"].items() if k != "evaluation"}}))
    assert run_benchmark(changed, tmp_path, log=lambda m: None, in_process=True)["skipped"] == ["digits-0-deep-svdd-s0"]


def test_a_cell_measured_with_another_suite_is_stale_and_evaluated_again(tmp_path):
    """Another test-set size or attack list is as stale as another training config, but the trained
    detector is still the one the suite wants: it is kept and evaluated again, not retrained."""
    suite = _tiny_suite(methods=("deep-svdd",)).select(classes=["0"])
    run_benchmark(suite, tmp_path, log=lambda m: None, in_process=True)
    path = tmp_path / "cells" / "digits-0-deep-svdd-s0.json"
    assert json.loads(path.read_text())["measurement"]["max_test"] == 20
    weights = tmp_path / "runs" / "digits-0-deep-svdd-s0" / "detector.safetensors"
    trained = weights.stat().st_mtime_ns
    messages = []
    fewer = dataclasses.replace(suite, max_test=10)
    assert run_benchmark(fewer, tmp_path, log=messages.append, in_process=True)["done"] == ["digits-0-deep-svdd-s0"]
    assert any("another test set or attacks" in m and "suite.max_test: 20 -> 10" in m for m in messages), messages
    assert json.loads(path.read_text())["num_test"] == 10
    assert weights.stat().st_mtime_ns == trained  # loaded, not trained again
    messages = []
    stronger = dataclasses.replace(fewer, attacks=(AttackSpec("pgd", steps=3), AttackSpec("square", queries=5)))
    assert run_benchmark(stronger, tmp_path, log=messages.append, in_process=True)["done"] == ["digits-0-deep-svdd-s0"]
    assert any("suite.attacks.pgd-2x1" in m and "suite.attacks.pgd-3x1" in m for m in messages), messages
    assert set(json.loads(path.read_text())["attacks"]) == {"pgd-3x1", "square-5"}
    assert run_benchmark(stronger, tmp_path, log=lambda m: None, in_process=True)["skipped"] == ["digits-0-deep-svdd-s0"]
    kept = sorted((tmp_path / "stale").iterdir())
    assert len(kept) == 2 and all([f.name for f in k.iterdir()] == [path.name] for k in kept)
    messages = []  # fewer training images: another detector, so the run is retired and trained again
    smaller = dataclasses.replace(stronger, max_train=40)
    assert run_benchmark(smaller, tmp_path, log=messages.append, in_process=True)["done"] == ["digits-0-deep-svdd-s0"]
    assert any("trained with another config" in m and "suite.max_train: 60 -> 40" in m for m in messages), messages
    assert json.loads(path.read_text())["num_train"] == 40 and weights.stat().st_mtime_ns != trained


def test_dry_run_says_what_each_cell_would_get_and_touches_nothing(tmp_path, capsys):
    from robustad.benchmark.schedule import plan_benchmark

    suite = _tiny_suite(methods=("deep-svdd",))
    run_benchmark(suite.select(classes=["0"]), tmp_path, log=lambda m: None, in_process=True)
    (tmp_path / "runs" / "digits-1-deep-svdd-s0").mkdir(parents=True)  # an interrupted training
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    plan = {row["cell"]: (row["state"], row["detail"]) for row in plan_benchmark(suite, tmp_path)}
    assert plan == {"digits-0-deep-svdd-s0": ("done", ""),
                    "digits-1-deep-svdd-s0": ("to run", "its training run is there and resumes")}
    plan = plan_benchmark(dataclasses.replace(suite, max_test=10), tmp_path)
    assert plan[0] == {"cell": "digits-0-deep-svdd-s0", "state": "re-evaluate", "detail": "suite.max_test: 20 -> 10"}
    retrain = dataclasses.replace(suite, train_overrides={**TINY, "train.steps_per_epoch": 3})
    assert plan_benchmark(retrain, tmp_path)[0]["state"] == "retrain"
    (tmp_path / "cells" / "digits-1-deep-svdd-s0.running").write_text(
        json.dumps({"pid": os.getpid(), "host": __import__("socket").gethostname()}))
    assert plan_benchmark(suite, tmp_path)[1]["state"] == "running"
    (tmp_path / "cells" / "digits-1-deep-svdd-s0.running").unlink()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    # the CLI: the suite's own cells, nothing run
    assert main(["benchmark", "--suite", "cpu-quick", "--methods", "cobra", "--out", str(tmp_path / "q"),
                 "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "mnist-3-cobra-s0: to run\n" and "nothing was run or moved" in captured.err
    assert not (tmp_path / "q" / "cells").exists()
    assert main(["benchmark", "--suite", "cpu-quick", "--out", str(tmp_path), "--dry-run", "--aggregate-only"]) == 2
    assert "--dry-run runs nothing by itself" in capsys.readouterr().err


def test_a_cell_from_before_cells_recorded_their_suite_is_checked_by_its_rows(tmp_path):
    from robustad.benchmark.runner import record_changes

    suite = _tiny_suite(methods=("deep-svdd",)).select(classes=["0"])
    run_benchmark(suite, tmp_path, log=lambda m: None, in_process=True)
    record = json.loads((tmp_path / "cells" / "digits-0-deep-svdd-s0.json").read_text())
    cell = suite.cells()[0]
    old = {k: v for k, v in record.items() if k != "measurement"}
    assert record_changes(suite, cell, old) == ([], [])
    stronger = dataclasses.replace(suite, attacks=(AttackSpec("pgd", steps=3), AttackSpec("square", queries=5)))
    assert record_changes(stronger, cell, old) == ([], ["attacks: ['pgd-2x1', 'square-5'] -> ['pgd-3x1', 'square-5']"])
    wider = dataclasses.replace(suite, sweep_factors=(2.0, 4.0))
    assert [c.split(":")[0] for c in record_changes(wider, cell, old)[1]] == ["eps sweep"]
    assert record_changes(dataclasses.replace(suite, max_test=10), cell, old) == ([], ["num_test: 20 -> at most 10"])
    assert record_changes(dataclasses.replace(suite, max_train=40), cell, old) == (["num_train: 60 -> at most 40"], [])


def test_a_cell_in_its_own_process(tmp_path):
    suite = _tiny_suite(methods=("cobra",)).select(classes=["0"])
    outcome = run_benchmark(suite, tmp_path, log=lambda m: None)
    assert outcome["done"] == ["digits-0-cobra-s0"], outcome
    record = json.loads((tmp_path / "cells" / "digits-0-cobra-s0.json").read_text())
    assert record["peak_rss_mb"] > 50


def test_cells_in_parallel_processes_match_in_process_results(tmp_path):
    suite = _tiny_suite().select(classes=["1"])
    messages = []
    outcome = run_benchmark(suite, tmp_path / "par", log=messages.append, jobs=2)
    assert any(m.startswith("2/2 cells finished in") for m in messages), messages
    assert sorted(outcome["done"]) == ["digits-1-cobra-s0", "digits-1-deep-svdd-s0"], outcome
    # The reference runs at the jobs' thread count: results are reproducible for a given seed and
    # thread count, and a different count reorders float sums (training drifts on some CPUs).
    job_threads = json.loads((tmp_path / "par" / "cells" / f"{outcome['done'][0]}.json").read_text())["torch_threads"]
    threads = torch.get_num_threads()
    torch.set_num_threads(job_threads)
    try:
        run_benchmark(suite, tmp_path / "seq", log=lambda m: None, in_process=True)
    finally:
        torch.set_num_threads(threads)
    for cell in outcome["done"]:
        par = json.loads((tmp_path / "par" / "cells" / f"{cell}.json").read_text())
        seq = json.loads((tmp_path / "seq" / "cells" / f"{cell}.json").read_text())
        assert par["auroc_clean"] == pytest.approx(seq["auroc_clean"], abs=1e-6)
        if "OMP_NUM_THREADS" not in os.environ:  # each of the 2 jobs gets its share of the cores
            assert par["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ConfigError, match="jobs must be >= 1"):
        run_benchmark(suite, tmp_path / "x", jobs=0)
    with pytest.raises(ConfigError, match="one at a time"):
        run_benchmark(suite, tmp_path / "x", in_process=True, jobs=2)


def test_a_time_limit_pauses_a_cell_in_training_and_starts_no_cell_after_it(tmp_path, capsys):
    import time

    two_epochs = {**TINY, "train.epochs": 2}
    suite = dataclasses.replace(_tiny_suite(methods=("cobra",)), train_overrides=two_epochs)
    messages = []
    # the limit passes while the first cell's process starts: it trains one epoch and pauses
    outcome = run_benchmark(suite, tmp_path, log=messages.append, deadline=time.time() + 1.0)
    assert outcome["paused"] == ["digits-0-cobra-s0"] and outcome["unstarted"] == ["digits-1-cobra-s0"], outcome
    assert not outcome["done"] and not outcome["failed"]
    assert (tmp_path / "runs" / "digits-0-cobra-s0" / "train_state.safetensors").is_file()
    assert not (tmp_path / "cells" / "digits-0-cobra-s0.json").exists()
    assert any("1 cell(s) paused in training and 1 not started" in m for m in messages), messages
    assert not list((tmp_path / "cells").glob("*.running"))  # claims released
    outcome = run_benchmark(suite, tmp_path, log=messages.append, in_process=True)
    assert sorted(outcome["done"]) == ["digits-0-cobra-s0", "digits-1-cobra-s0"], outcome
    assert any("resuming from" in m and "at epoch 1/2" in m for m in messages), messages
    # the CLI: exit code 3 and what to do, not "no cell results"
    args = ["benchmark", "--suite", "cpu-quick", "--methods", "cobra", "--out", str(tmp_path / "q")]
    assert main([*args, "--time-limit", "0"]) == 3
    err = capsys.readouterr().err
    assert "paused at the time limit with 1 cell(s) to go; the same command goes on" in err
    assert "no cell results" not in err


def test_rerunning_a_cell_reproduces_its_auroc(tmp_path):
    from robustad.benchmark import run_cell

    suite = _tiny_suite(methods=("cobra",))
    cell = Cell("digits", "1", "cobra", 0)
    a = run_cell(suite, cell, tmp_path / "a", log=lambda m: None)
    b = run_cell(suite, cell, tmp_path / "b", log=lambda m: None)
    assert a["auroc_clean"] == pytest.approx(b["auroc_clean"], abs=1e-6)
    assert a["auroc_attack"] == pytest.approx(b["auroc_attack"], abs=0.02)


def test_cli_benchmark_selection_and_aggregate_only(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["benchmark", "--suite", "cpu-quick", "--aggregate-only", "--out", str(out)]) == 2
    assert "no cell results" in capsys.readouterr().err
    assert main(["benchmark", "--suite", "cpu-quick", "--methods", "nope", "--out", str(out)]) == 2
    assert "unknown method" in capsys.readouterr().err


def _row(attack, eps, auroc):
    return {"attack": attack, "eps": eps, "auroc": auroc}


def test_masking_checks_read_a_cells_rows():
    from robustad.benchmark.tables import cell_checks

    sound = {"suite_rows": [_row("clean", 0.0, 0.95), _row("pgd-10-sweep", 0.01, 0.9), _row("worst-case", 0.01, 0.9),
                            _row("pgd-50x1", 0.03, 0.7), _row("square-400", 0.03, 0.8), _row("worst-case", 0.03, 0.7),
                            _row("worst-case", 0.06, 0.4)]}
    assert cell_checks(sound) == {"eps_monotone": True, "black_box_weaker": True}
    rising = {"suite_rows": sound["suite_rows"][:-1] + [_row("worst-case", 0.06, 0.75)]}
    assert cell_checks(rising)["eps_monotone"] is False
    masked = {"suite_rows": [_row("clean", 0.0, 0.95), _row("pgd-50x1", 0.03, 0.9), _row("square-400", 0.03, 0.6),
                             _row("worst-case", 0.03, 0.6)]}
    assert cell_checks(masked) == {"eps_monotone": True, "black_box_weaker": False}


def test_published_tables_are_rebuilt_from_their_cells(tmp_path):
    """benchmarks/results/<suite>/results.md is exactly what the committed cell files give."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    suites = sorted(p for p in root.iterdir() if p.is_dir())
    assert suites, f"no published benchmark results under {root}"
    for published in suites:
        shutil.copytree(published / "cells", tmp_path / published.name / "cells")
        rebuilt = aggregate(tmp_path / published.name)
        assert rebuilt.read_text() == (published / "results.md").read_text(), published.name


def test_published_cells_were_measured_with_the_presets_of_today():
    """A preset or suite change must come with re-run cells (the runner re-runs stale ones by itself)."""
    from pathlib import Path

    from robustad.benchmark.runner import _preset_config, record_changes

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    presets, stale = {}, []
    for path in sorted(root.glob("*/cells/*.json")):
        record = json.loads(path.read_text())
        cell, suite = Cell(**record["cell"]), benchmark_suite(record["suite"])
        # a cell run with --set is checked against its preset with the same overrides
        suite.train_overrides = record.get("train_overrides", suite.train_overrides)
        key = (record["suite"], cell.dataset, cell.method, cell.seed, json.dumps(suite.train_overrides, sort_keys=True))
        if key not in presets:
            presets[key] = _preset_config(suite, cell)
        training, measured = record_changes(suite, cell, record, presets[key])
        if training or measured:
            stale.append(f"{path.relative_to(root)}: {(training + measured)[:2]}")
    assert presets and not stale, f"{len(stale)} published cells are stale, e.g. {stale[:3]}"


def test_compare_cells_script_reports_the_shared_cells(tmp_path):
    """benchmarks/compare_cells.py: per-cell and mean differences between two runs."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_cells.py"
    spec = importlib.util.spec_from_file_location("compare_cells", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def write(run, cell, clean, attacked):
        (tmp_path / run / "cells").mkdir(parents=True, exist_ok=True)
        record = {"cell": {"dataset": "mnist", "normal": cell[0], "method": cell[1], "seed": 0},
                  "id": f"mnist-{cell[0]}-{cell[1]}-s0", "auroc_clean": clean, "auroc_attack": attacked}
        (tmp_path / run / "cells" / f"{record['id']}.json").write_text(json.dumps(record))

    write("a", ("0", "cobra"), 0.90, 0.80)
    write("b", ("0", "cobra"), 0.92, 0.70)
    write("a", ("1", "cobra"), 0.95, 0.90)  # only in a: not compared
    text = module.compare(tmp_path / "a", tmp_path / "b")
    assert text.startswith("1 shared cells")
    assert "clean: median 2.0" in text and "attacked: median 10.0" in text
    assert "cobra (1 cells): clean 90.0 -> 92.0, attacked 80.0 -> 70.0" in text
    write("c", ("5", "csi"), 0.5, 0.5)
    with pytest.raises(SystemExit, match="no cell id"):
        module.compare(tmp_path / "a", tmp_path / "c")


def test_runners_sharing_a_folder_never_run_a_cell_twice(tmp_path):
    """A cell locked by a live process is left alone; a lock whose process is gone is taken over."""
    import socket
    import subprocess
    import sys

    from robustad.benchmark.runner import claim_cell, release_cell

    suite = _tiny_suite(methods=("deep-svdd",))
    live, stale = suite.cells()
    cells_dir = tmp_path / "cells"
    cells_dir.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    (cells_dir / f"{live.id}.running").write_text(json.dumps({"pid": os.getpid(), "host": host}))
    (cells_dir / f"{stale.id}.running").write_text(json.dumps({"pid": gone.pid, "host": host}))
    messages = []
    outcome = run_benchmark(suite, tmp_path, log=messages.append, in_process=True)
    assert outcome["busy"] == [live.id] and outcome["done"] == [stale.id]
    assert any(f"{live.id} is being run by process {os.getpid()}" in m for m in messages)
    assert not (cells_dir / f"{live.id}.json").exists() and (cells_dir / f"{stale.id}.json").is_file()
    assert (cells_dir / f"{live.id}.running").exists()  # not ours to remove
    assert not (cells_dir / f"{stale.id}.running").exists()  # released after the cell
    # claiming is exclusive, and a lock from another machine is never taken over
    (cells_dir / f"{live.id}.running").unlink()
    assert claim_cell(tmp_path, live) is None
    assert claim_cell(tmp_path, live).startswith(f"process {os.getpid()}, started ")
    release_cell(tmp_path, live)
    (cells_dir / f"{live.id}.running").write_text(json.dumps({"pid": 1, "host": host + "-elsewhere"}))
    assert claim_cell(tmp_path, live).startswith(f"process 1 on {host}-elsewhere")


def test_benchmark_on_your_own_folders_runs_the_default_cobra_and_the_references(tmp_path, capsys):
    """`robustad benchmark --data folder ...`: the methods come from the images' size, results per method."""
    from robustad.data.datasets import load_split
    from robustad.data.folder import save_image

    split = load_split("digits", [0], max_test=40, seed=0)
    for i, image in enumerate(split.train[:60]):
        save_image(image, tmp_path / "good" / f"{i}.png")
    for i, image in enumerate(split.test[split.test_labels == 1][:12]):
        save_image(image, tmp_path / "bad" / f"{i}.png")
    out = tmp_path / "bench"
    argv = ["benchmark", "--data", "folder", "--normal-dir", str(tmp_path / "good"), "--abnormal-dir",
            str(tmp_path / "bad"), "--out", str(out), "--dry-run"]
    assert main(argv) == 0
    plan = capsys.readouterr().out
    for method in ("cobra-ensemble", "cobra", "pixel-knn", "image-stats"):  # 8 px images: the small-image default
        assert f"folder-good-{method}-s0: to run" in plan
    assert "pixel-patch" not in plan  # 8 px: one patch is the whole image, pixel-knn already covers it
    assert main([*argv[:-1], "--methods", "pixel-knn,image-stats", "--max-test", "20", "--in-process"]) == 0
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert set(cells) == {"folder-good-pixel-knn-s0", "folder-good-image-stats-s0"}
    assert all(0 <= c["auroc_attack"] <= c["auroc_clean"] + 0.02 for c in cells.values())
    assert "## folder" in (out / "results.md").read_text()
    assert main(["benchmark", "--data", "folder", "--normal-dir", str(tmp_path / "good"), "--out", str(out)]) == 2
    assert "needs --normal-dir" in capsys.readouterr().err
    assert main(["benchmark", "--suite", "validation", "--data", "folder", "--out", str(out)]) == 2


def test_suite_for_data_settles_the_own_data_benchmark_from_python(tmp_path):
    """The CLI's --data benchmark is suite_for_data: same checks and same suite from Python."""
    from robustad.benchmark.suites import suite_for_data
    from robustad.data.datasets import load_split
    from robustad.data.folder import save_image

    split = load_split("digits", [0], max_test=20, seed=0)
    for i, image in enumerate(split.train[:5]):
        save_image(image, tmp_path / "good" / f"{i}.png")
    suite = suite_for_data("folder", normal_dir=str(tmp_path / "good"), abnormal_dirs=[str(tmp_path / "bad")])
    assert suite.datasets == {"folder": ["good"]} and suite.methods[0] == "cobra-ensemble"  # 8 px: small images
    assert suite.data_args["folder"]["abnormal_dirs"] == [str(tmp_path / "bad")]
    for kwargs, match in [({"dataset": "folder", "normal_dir": str(tmp_path / "good")}, "needs --normal-dir"),
                          ({"dataset": "digits", "normal_dir": "x"}, "belong to --data folder"),
                          ({"dataset": "digits"}, "name the normal classes of digits")]:
        with pytest.raises(ConfigError, match=match):
            suite_for_data(**kwargs)
    assert suite_for_data("digits", categories=["3"], methods=("pixel-knn",)).methods == ("pixel-knn",)


@pytest.mark.parametrize("content", ['{"broken', "[1, 2]", '{"id": "x", "cell": {"dataset": "mnist"}}', "\udcff"])
def test_a_damaged_cell_file_is_named_in_one_line(tmp_path, capsys, content):
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "mnist-3-cobra-s0.json").write_text(content, errors="surrogateescape")
    for extra in (["--aggregate-only"], ["--dry-run", "--datasets", "mnist", "--classes", "3", "--methods", "cobra"]):
        assert main(["benchmark", "--suite", "cpu-quick", "--out", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert "mnist-3-cobra-s0.json is damaged" in err and "Traceback" not in err


def test_cells_as_submitit_jobs_write_the_same_results(tmp_path):
    from robustad.benchmark.launchers import SubmititLauncher

    suite = _tiny_suite(methods=("cobra",))  # two cells (digits 0 and 1), two submitit workers at once
    ids = ["digits-0-cobra-s0", "digits-1-cobra-s0"]
    launcher = SubmititLauncher(tmp_path, "local", cpus_per_cell=1, minutes=20)
    outcome = run_benchmark(suite, tmp_path, log=lambda m: None, launcher=launcher, jobs=2)
    assert sorted(outcome["done"]) == ids, outcome
    for cell in ids:
        assert json.loads((tmp_path / "submitit" / "status" / f"{cell}.json").read_text()) == {"exit": 0}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the jobs' thread count: float sums, and so PGD's steps, depend on it
    try:
        alone = run_benchmark(suite, tmp_path / "here", log=lambda m: None, in_process=True)
    finally:
        torch.set_num_threads(previous)
    assert sorted(alone["done"]) == ids
    for cell in ids:
        job, here = (json.loads((d / "cells" / f"{cell}.json").read_text()) for d in (tmp_path, tmp_path / "here"))
        for key in ("auroc_clean", "auroc_attack"):
            assert job[key] == pytest.approx(here[key], abs=1e-6), (cell, key)
    # the rerun finds the results and submits nothing
    assert sorted(run_benchmark(suite, tmp_path, log=lambda m: None, launcher=launcher)["skipped"]) == ids


def test_a_job_that_ends_without_its_status_counts_as_failed(tmp_path):
    from robustad.benchmark.launchers import _JobHandle

    class Job:
        def __init__(self, done):
            self._done = done

        def done(self):
            return self._done

    status = tmp_path / "s.json"
    assert _JobHandle(Job(False), status).poll() is None
    assert _JobHandle(Job(True), status).poll() == 1  # killed by the cluster before it could say
    status.write_text('{"exit": 3}')
    assert _JobHandle(Job(True), status).poll() == 3
    status.write_text("{not json")
    assert _JobHandle(Job(True), status).poll() == 1


def test_local_cells_share_out_the_gpus():
    from robustad.benchmark.launchers import LocalLauncher, visible_gpus

    class Proc:
        def __init__(self, running=True):
            self.running = running

        def poll(self):
            return None if self.running else 0

    launcher = LocalLauncher({}, gpus=["0", "1", "2"])
    assert launcher.gpu_for_next() == "0"
    launcher.busy = {Proc(): "0", Proc(): "1", Proc(running=False): "2"}
    assert launcher.gpu_for_next() == "2"  # the only one with nothing running (a finished cell frees its GPU)
    launcher.busy.update({Proc(): "2", Proc(): "0"})
    assert launcher.gpu_for_next() == "1"  # 0 runs two cells, 1 and 2 one each: the first of the least busy
    assert LocalLauncher({}, gpus=["0"]).gpu_for_next() is None
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3, 5"}) == ["3", "5"] and visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_cluster_settings_without_submitit_are_refused(tmp_path, capsys):
    from robustad.cli import main

    assert main(["benchmark", "--suite", "cpu-quick", "--out", str(tmp_path / "b"), "--slurm-partition", "gpu"]) == 2
    assert "settings of --submitit slurm" in capsys.readouterr().err
