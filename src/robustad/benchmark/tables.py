"""Turn cell results into a CSV, Markdown tables (mean and per class) and a clean-vs-attacked plot."""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from robustad.errors import ConfigError
from robustad.methods.catalog import METHODS

# AUROC % clean / PGD-1000 reported in the COBRA paper (poster), ResNet-18 at 32 px, full test sets
PAPER = {
    ("mnist", "cobra"): (92.8, 96.4), ("mnist", "csi"): (93.8, 3.4),
    ("fashion-mnist", "cobra"): (93.1, 89.6), ("fashion-mnist", "csi"): (92.7, 5.8),
}
COLUMNS = ["id", "dataset", "normal", "method", "seed", "auroc_clean", "auroc_attack", "eps_255", "train_seconds",
           "score_ms_per_image", "peak_rss_mb", "peak_cuda_mb", "num_train", "num_test", "device_name", "torch_threads",
           "date"]


# a cell file is a few kilobytes; anything far larger was not written by robustad
MAX_CELL_BYTES = 16 << 20


def read_cell(path: Path) -> dict[str, Any]:
    """One cell's result file, checked for the fields every reader needs; a damaged one is a one-line error."""
    try:
        if (size := path.stat().st_size) > MAX_CELL_BYTES:
            raise ValueError(f"{size:,} bytes, more than a cell file ever holds")
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("cell"), dict):
            raise ValueError("not a cell record")
        for key in ("dataset", "normal", "method", "seed"):
            if key not in record["cell"]:
                raise ValueError(f"its cell has no {key!r}")
        if not isinstance(record.get("id"), str):
            raise ValueError("it has no id")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ConfigError(f"benchmark result {path} is damaged ({err}); delete it (that cell runs again on the "
                          "next run) or restore it from a copy") from None
    return record


def load_cells(out: Path) -> list[dict[str, Any]]:
    cells = []
    for path in sorted((Path(out) / "cells").glob("*.json")):
        record = read_cell(path)
        record.update({"dataset": record["cell"]["dataset"], "normal": record["cell"]["normal"],
                       "method": record["cell"]["method"], "seed": record["cell"]["seed"]})
        cells.append(record)
    return cells


# AUROC noise allowed before a check fails (one or two images of a 200-image test set)
CHECK_TOLERANCE = 0.02


def cell_checks(record: dict[str, Any], tolerance: float = CHECK_TOLERANCE) -> dict[str, bool]:
    """Gradient-masking symptoms visible in a cell's own rows (no extra attacks).

    eps_monotone: the worst-case AUROC never rises as eps grows (clean at eps 0 first);
    black_box_weaker: no black-box attack (Square) beats the best white-box attack at an eps.
    """
    rows = record.get("suite_rows", [])
    worst = sorted((r["eps"], r["auroc"]) for r in rows if r["attack"] in ("clean", "worst-case"))
    checks = {"eps_monotone": all(b[1] <= a[1] + tolerance for a, b in zip(worst, worst[1:]))}
    by_eps: dict[float, list[dict]] = defaultdict(list)
    for r in rows:
        if r["attack"] not in ("clean", "worst-case") and not r["attack"].endswith("-sweep"):
            by_eps[r["eps"]].append(r)
    black = [(r["auroc"], min((w["auroc"] for w in group if not w["attack"].startswith("square")), default=None))
             for group in by_eps.values() for r in group if r["attack"].startswith("square")]
    if black:
        checks["black_box_weaker"] = all(white is None or b >= white - tolerance for b, white in black)
    return checks


def _failed_checks(cells: list[dict]) -> list[str]:
    return sorted({name for c in cells for name, ok in cell_checks(c).items() if not ok})


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _mean_sd(cells: list[dict], key: str) -> str:
    """Mean over the cells, and with several seeds the spread of the per-seed means: "91.2 ± 1.3"."""
    text = _pct(statistics.mean(c[key] for c in cells))
    by_seed: dict[int, list[float]] = defaultdict(list)
    for c in cells:
        by_seed[c.get("seed", 0)].append(c[key])
    if len(by_seed) > 1:
        text += f" ± {100 * statistics.stdev(statistics.mean(v) for v in by_seed.values()):.1f}"
    return text


def _order(methods) -> list[str]:
    known = list(METHODS)
    return sorted(set(methods), key=lambda m: known.index(m) if m in known else len(known))


def _sort_key(normal: str):
    return (0, int(normal), "") if normal.isdigit() else (1, 0, normal)


def _machine(cell: dict) -> str:
    return f"{cell.get('device_name')} ({cell.get('device')}); torch {cell['library_versions'].get('torch')}"


MACHINE_MARKS = ("", "¹", "²", "³")  # the machine that ran most cells goes unmarked


def _machine_marks(cells: list[dict]) -> dict[str, str]:
    """A mark per machine for the per-class tables, by how many cells each ran."""
    ranked = [m for m, _ in Counter(_machine(c) for c in cells).most_common()]
    return {m: MACHINE_MARKS[i] if i < len(MACHINE_MARKS) else f"({i})" for i, m in enumerate(ranked)}


def _machines(cells: list[dict]) -> str:
    """Which machines ran the cells: their times are only comparable within one machine."""
    counts = Counter(_machine(c) for c in cells)
    if len(counts) == 1:
        return f"Machine: {next(iter(counts))}"
    return "Machines (times compare only within one): " + "; ".join(f"{m}: {n} cells" for m, n in counts.most_common())


def aggregate(out: str | Path) -> Path | None:
    """results.csv, results.md and clean_vs_attacked.png in `out` from out/cells/*.json."""
    out = Path(out)
    cells = load_cells(out)
    if not cells:
        return None
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + ["eps_sweep", "failed_checks"], extrasaction="ignore")
        writer.writeheader()
        for c in cells:
            writer.writerow({**c, "eps_sweep": json.dumps(c.get("eps_sweep", {})),
                             "failed_checks": " ".join(_failed_checks([c]))})

    by_data: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        by_data[c["dataset"]].append(c)
    suites = sorted({str(c.get("suite", "")) for c in cells} - {""})
    lines = [f"# robustad benchmark {', '.join(suites)}", ""]
    lines += [f"{_machines(cells)}; cells dated {min(c['date'] for c in cells)[:10]} to "
              f"{max(c['date'] for c in cells)[:10]}. AUROC in %, attacked = worst case per image over the "
              "suite's attacks (target both). Masking checks, per cell from its own rows (tolerance "
              f"{100 * CHECK_TOLERANCE:g} points): the worst case never rises with eps, and Square (black-box) "
              "never beats the white-box attacks; a failed check is named.", ""]
    for dataset, rows in by_data.items():
        eps = sorted({c["eps_255"] for c in rows})
        classes = sorted({c["normal"] for c in rows}, key=_sort_key)
        lines += [f"## {dataset} (eps {', '.join(f'{e:g}/255' for e in eps)}; {len(classes)} class(es))", ""]
        head = ("| method | classes | seeds | clean | attacked | sweep (eps/255: AUROC) | train s | score ms/img | "
                "peak RSS MB | masking checks | paper clean / PGD-1000 |")
        lines += [head, "|" + "---|" * 11]
        for method in _order(c["method"] for c in rows):
            mine = [c for c in rows if c["method"] == method]
            sweep_keys = sorted({k for c in mine for k in c.get("eps_sweep", {})}, key=lambda k: float(k.split("/")[0]))
            sweep = ", ".join(
                f"{k.split('/')[0]}: {_pct(statistics.mean(c['eps_sweep'][k] for c in mine if k in c['eps_sweep']))}"
                for k in sweep_keys)
            paper = PAPER.get((dataset, method))
            lines.append(
                f"| {method} | {len({c['normal'] for c in mine})} | {len({c.get('seed', 0) for c in mine})} | "
                f"{_mean_sd(mine, 'auroc_clean')} | {_mean_sd(mine, 'auroc_attack')} | {sweep} | "
                f"{statistics.mean(c['train_seconds'] for c in mine):.0f} | "
                f"{statistics.mean(c['score_ms_per_image'] for c in mine):.2f} | "
                f"{max(c['peak_rss_mb'] for c in mine):.0f} | {', '.join(_failed_checks(mine)) or 'pass'} | "
                f"{f'{paper[0]} / {paper[1]}' if paper else ''} |")
        lines.append("")
        if len({frozenset(c["normal"] for c in rows if c["method"] == m) for m in {c["method"] for c in rows}}) > 1:
            lines += ["Methods were run on different classes so far: compare their means with care, or use the "
                      "per-class table.", ""]
        marks = _machine_marks(rows)
        if len(marks) > 1:
            lines += ["The cells of this data set ran on more than one machine: train s, score ms/img and peak RSS "
                      "mix them, and compare only within one machine (the per-class table marks which ran where).",
                      ""]
        if len(classes) > 1:
            several = len({c.get("seed", 0) for c in rows}) > 1
            lines += [f"Per class, clean / attacked{' (mean over seeds)' if several else ''}:", "",
                      "| method | " + " | ".join(classes) + " |", "|" + "---|" * (len(classes) + 1)]
            for method in _order(c["method"] for c in rows):
                cellmap: dict[str, list[dict]] = defaultdict(list)
                for c in rows:
                    if c["method"] == method:
                        cellmap[c["normal"]].append(c)
                lines.append(f"| {method} | " + " | ".join(
                    f"{_pct(statistics.mean(c['auroc_clean'] for c in cellmap[k]))} / "
                    f"{_pct(statistics.mean(c['auroc_attack'] for c in cellmap[k]))}"
                    f"{''.join(sorted({marks[_machine(c)] for c in cellmap[k]}))}" if k in cellmap else ""
                    for k in classes) + " |")
            lines.append("")
            legend = [f"- {mark} ran on {machine}" for machine, mark in marks.items() if mark]
            if legend:
                lines += legend + [""]
    (out / "results.md").write_text("\n".join(lines))
    _plot(cells, out / "clean_vs_attacked.png")
    return out / "results.md"


def _plot(cells: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({c["dataset"] for c in cells})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [c for c in cells if c["dataset"] == dataset]
        for method in _order(c["method"] for c in rows):
            mine = [c for c in rows if c["method"] == method]
            x = statistics.mean(c["auroc_clean"] for c in mine)
            y = statistics.mean(c["auroc_attack"] for c in mine)
            ax.scatter([100 * x], [100 * y], s=40, label=method, marker="o" if method.startswith("cobra") else "x")
        ax.plot([0, 100], [0, 100], color="grey", lw=0.5, ls="--")
        ax.set(xlim=(0, 100), ylim=(0, 100), xlabel="clean AUROC %", ylabel="attacked AUROC % (worst case)",
               title=dataset)
        ax.legend(fontsize=7, loc="upper left")  # labels next to points overlap where methods cluster
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
