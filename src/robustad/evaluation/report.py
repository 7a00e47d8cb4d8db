"""Run reports: report.json for machines, report.md for people."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def write_json(path: Path, data: dict) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=True))
    os.replace(tmp, path)
    return path


def _json_default(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def markdown_report(report: dict[str, Any]) -> str:
    lines = [f"# robustad report: {report.get('title', 'evaluation')}", ""]
    data = report.get("data", {})
    if data:
        lines += [f"Data: {data.get('description', '')}", ""]
    methods = report["methods"]
    first = next(iter(methods.values()))
    a = first["attack"]
    lines += [
        f"Attack: {a['name'].upper()}-{a['steps']}, eps = {a['eps']:.5f} ({a['eps'] * 255:.1f}/255), "
        f"restarts = {a['restarts']}, target = {a['target']}, random start = {a['random_start']}.",
        "",
        "| method | clean AUROC % | attacked AUROC % | TPR clean / attacked at threshold | FPR clean / attacked | train s | attack s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in methods.items():
        rc, ra = m.get("at_threshold_clean", {}), m.get("at_threshold_attack", {})
        lines.append(
            f"| {name} | {_fmt(m['auroc_clean'])} | {_fmt(m['auroc_attack'])} | "
            f"{_fmt(rc.get('tpr'))} / {_fmt(ra.get('tpr'))} | {_fmt(rc.get('fpr'))} / {_fmt(ra.get('fpr'))} | "
            f"{m.get('train_seconds', float('nan')):.0f} | {m.get('seconds_attack', float('nan')):.0f} |"
        )
    lines.append("")
    for name, m in methods.items():
        if m.get("description"):
            lines.append(f"- **{name}**: {m['description']}")
    if report.get("histograms"):
        lines += ["", f"![score histograms]({report['histograms']})"]
    timings = report.get("timings", {})
    if timings:
        lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
    lines += ["", f"Seed {report.get('seed')}; robustad {report.get('library_versions', {}).get('robustad')}.", ""]
    return "\n".join(lines)


def write_report(run_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(run_dir / "report.json", report)
    md_path = run_dir / "report.md"
    md_path.write_text(markdown_report(report))
    return json_path, md_path
