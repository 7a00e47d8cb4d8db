"""Merging the cells of several benchmark runs into one table (robustad.benchmark.merge)."""

import json
import shutil
from pathlib import Path

import pytest

from robustad.benchmark import aggregate
from robustad.benchmark.merge import MERGE_FILE, merge_cells
from robustad.cli import main
from robustad.errors import ConfigError

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cpu-full" / "cells"


def _source(folder: Path, ids: list[str], **changes) -> Path:
    """A result folder holding published cpu-full cells, with `changes` applied to each record."""
    (folder / "cells").mkdir(parents=True)
    for cid in ids:
        record = json.loads((PUBLISHED / f"{cid}.json").read_text())
        (folder / "cells" / f"{cid}.json").write_text(json.dumps({**record, **changes}))
    return folder


def test_first_source_wins_and_the_table_marks_the_other_machine(tmp_path):
    gpu = _source(tmp_path / "gpu", ["mnist-0-cobra-s0", "mnist-1-cobra-s0", "mnist-0-csi-s0"],
                  device="cuda:0", device_name="Some GPU")
    cpu = _source(tmp_path / "cpu", ["mnist-1-cobra-s0", "mnist-2-cobra-s0"])
    out = tmp_path / "merged"
    manifest = merge_cells([gpu, cpu], out)
    assert manifest["cells"] == {"mnist-0-cobra-s0": "../gpu", "mnist-0-csi-s0": "../gpu",
                                 "mnist-1-cobra-s0": "../gpu", "mnist-2-cobra-s0": "../cpu"}
    assert json.loads((out / MERGE_FILE).read_text()) == manifest
    assert json.loads((out / "cells" / "mnist-1-cobra-s0.json").read_text())["device_name"] == "Some GPU"
    text = aggregate(out).read_text()
    assert "Some GPU (cuda:0); torch 2.13.0+cpu: 3 cells" in text and "x86_64 (cpu); torch 2.13.0+cpu: 1 cells" in text
    assert "ran on more than one machine" in text
    cobra_row = [line for line in text.splitlines() if line.startswith("| cobra |")][-1]  # the per-class row
    cells = [c.strip() for c in cobra_row.split("|")[2:-1]]
    assert not cells[0].endswith("¹") and not cells[1].endswith("¹") and cells[2].endswith("¹"), cobra_row
    assert "- ¹ ran on x86_64 (cpu); torch 2.13.0+cpu" in text

    # a re-merge replaces the copies: a cell gone from every source goes from the merged folder too
    (gpu / "cells" / "mnist-0-csi-s0.json").unlink()
    merge_cells([gpu, cpu], out)
    assert not (out / "cells" / "mnist-0-csi-s0.json").exists()
    assert merge_cells([gpu, cpu], out, cell_ids={"mnist-2-cobra-s0"})["cells"] == {"mnist-2-cobra-s0": "../cpu"}


def test_cells_that_measured_different_things_are_refused(tmp_path):
    a = _source(tmp_path / "a", ["mnist-0-cobra-s0"])
    record = json.loads((PUBLISHED / "mnist-1-cobra-s0.json").read_text())
    record["config"]["train"]["epochs"] += 1
    b = _source(tmp_path / "b", [])
    (b / "cells" / "mnist-1-cobra-s0.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="differ in config"):
        merge_cells([a, b], tmp_path / "m")
    c = _source(tmp_path / "c", ["mnist-1-cobra-s0"], num_test=100)
    with pytest.raises(ConfigError, match="differ in num_test"):
        merge_cells([a, c], tmp_path / "m")
    with pytest.raises(ConfigError, match="not 'paper'"):
        merge_cells([a, a], tmp_path / "m", suite="paper")
    (tmp_path / "m2" / "cells").mkdir(parents=True)
    with pytest.raises(ConfigError, match="also a source"):
        merge_cells([a, tmp_path / "m2"], tmp_path / "m2")
    with pytest.raises(ConfigError, match="not a benchmark result folder"):
        merge_cells([a, tmp_path / "nowhere"], tmp_path / "m")
    with pytest.raises(ConfigError, match="at least two"):
        merge_cells([a], tmp_path / "m")


def test_recorded_measurements_must_agree_and_older_cells_are_judged_by_the_rest(tmp_path):
    from robustad.benchmark import benchmark_suite
    from robustad.benchmark.runner import measurement

    suite = benchmark_suite("cpu-full")
    settings = measurement(suite, 8 / 255)
    stronger = json.loads(json.dumps(settings))
    stronger["attacks"]["adaptive"]["steps"] = 50  # same label, stronger attack
    old = _source(tmp_path / "old", ["mnist-0-cobra-s0"])  # a published cell: no recorded measurement
    new = _source(tmp_path / "new", ["mnist-1-cobra-s0"], measurement=settings)
    other = _source(tmp_path / "other", ["mnist-2-cobra-s0"], measurement=stronger)
    assert len(merge_cells([old, new], tmp_path / "m1")["cells"]) == 2
    with pytest.raises(ConfigError, match="differ in measurement"):
        merge_cells([old, new, other], tmp_path / "m2")


def test_cli_merge_from_builds_one_table(tmp_path, capsys):
    a = _source(tmp_path / "a", ["mnist-0-cobra-s0", "mnist-8-knn-s0"], device="cuda:0", device_name="Some GPU")
    b = _source(tmp_path / "b", ["mnist-1-cobra-s0"])
    out = tmp_path / "m"
    assert main(["benchmark", "--suite", "cpu-full", "--methods", "cobra", "--merge-from", f"{a},{b}",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "merged 2 cells" in captured.err and str(out / "results.md") in captured.out
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["mnist-0-cobra-s0.json", "mnist-1-cobra-s0.json"]
    assert main(["benchmark", "--suite", "paper", "--merge-from", f"{a},{b}", "--out", str(tmp_path / "p")]) == 2
    assert "not 'paper'" in capsys.readouterr().err


def test_published_merged_tables_hold_what_their_sources_give(tmp_path):
    """A committed merged folder is what re-merging its sources gives now (not stale)."""
    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    merged = [p for p in root.iterdir() if (p / MERGE_FILE).is_file()]
    for folder in merged:
        manifest = json.loads((folder / MERGE_FILE).read_text())
        sources = [(folder / s).resolve() for s in manifest["sources"]]
        again = merge_cells(sources, tmp_path / folder.name, cell_ids=set(manifest["cells"]))
        origin = {cid: (tmp_path / folder.name / src).resolve() for cid, src in again["cells"].items()}
        assert origin == {cid: (folder / src).resolve() for cid, src in manifest["cells"].items()}, folder.name
        for cid in manifest["cells"]:
            name = f"{cid}.json"
            assert (tmp_path / folder.name / "cells" / name).read_bytes() == (folder / "cells" / name).read_bytes()
        shutil.rmtree(tmp_path / folder.name)
