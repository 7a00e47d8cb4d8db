"""Run reports: report.json for machines, report.md for people."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from robustad.config import format_eps
from robustad.files import atomic_write


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def write_json(path: Path, data: dict) -> Path:
    atomic_write(path, json.dumps(data, indent=2, default=_json_default, allow_nan=True))
    return path


def _json_default(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _attack_text(a: dict[str, Any]) -> str:
    schedule = f", {a['schedule']} step sizes" if a.get("schedule", "constant") != "constant" else ""
    return (f"{a['name'].upper()}-{a['steps']}, eps {format_eps(a['eps'])}, restarts {a['restarts']}, "
            f"target {a['target']}{schedule}")


def markdown_report(report: dict[str, Any]) -> str:
    lines = [f"# robustad report: {report.get('title', 'evaluation')}", ""]
    data = report.get("data", {})
    if data:
        lines += [f"Data: {data.get('description', '')}", ""]
    lines += [
        "AUROC in %; higher scores mean more anomalous. TPR and FPR are at the detector's threshold "
        "(calibrated on held-out normal images).",
        "",
        "| method | attack | clean AUROC | attacked AUROC | TPR clean / attacked | FPR clean / attacked | attack s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in report["methods"].items():
        for run in m.get("attacks", [m]):
            rc, ra = run.get("at_threshold_clean", {}), run.get("at_threshold_attack", {})
            lines.append(
                f"| {name} | {_attack_text(run['attack'])} | {_fmt(run['auroc_clean'])} | {_fmt(run['auroc_attack'])} | "
                f"{_fmt(rc.get('tpr'))} / {_fmt(ra.get('tpr'))} | {_fmt(rc.get('fpr'))} / {_fmt(ra.get('fpr'))} | "
                f"{run.get('seconds_attack', float('nan')):.0f} |"
            )
    lines.append("")
    for name, m in report["methods"].items():
        speed = m.get("train_images_per_second")
        rate = f" ({speed:.1f} normal images/s)" if speed else ""
        trained = f" Trained in {m['train_seconds']:.0f} s{rate}." if m.get("train_seconds") else ""
        fit = m.get("fit_info", {})
        if fit.get("num_train") is not None:  # the detector's own training set, which a report may not show
            held = f" (and {fit['num_holdout']} more held out for the threshold)" if fit.get("num_holdout") else ""
            trained = f" Trained on {fit['num_train']} normal images{held}." + trained
        description = f" {m['description']}." if m.get("description") else ""
        if description or trained:
            lines.append(f"- **{name}**:{description}{trained}")
    with_maps = {n: m["maps"] for n, m in report["methods"].items() if m.get("maps")}
    if with_maps:
        lines += ["", "Anomaly maps (pixel level; the map attack pushes the map up on normal images and down on "
                  "the defects, at the image-level attack's eps):", ""]
        if any("pixel_auroc_clean" in m for m in with_maps.values()):
            lines += ["| method | pixel AUROC clean | pixel AUROC attacked | PRO clean | PRO attacked |",
                      "|---|---|---|---|---|"]
            lines += [f"| {n} | {_fmt(m['pixel_auroc_clean'])} | {_fmt(m['pixel_auroc_attack'])} | "
                      f"{_fmt(m['pro_clean'])} | {_fmt(m['pro_attack'])} |" for n, m in with_maps.items()
                      if "pixel_auroc_clean" in m]
        if (report.get("maps") or {}).get("note"):
            lines += ["", f"Note: {report['maps']['note']}"]
        lines += [""] + [f"![{n} anomaly maps]({m['figure']})" for n, m in with_maps.items() if m.get("figure")]
    if report.get("notes"):
        lines += [""] + [f"Note: {note}" for note in report["notes"]]
    if report.get("histograms"):
        lines += ["", f"![score histograms]({report['histograms']})"]
    timings = report.get("timings", {})
    if timings:
        lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
    seed = f"Seed {report['seed']}; " if report.get("seed") is not None else ""
    lines += ["", f"{seed}robustad {report.get('library_versions', {}).get('robustad')}.", ""]
    return "\n".join(lines)


def write_report(run_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(run_dir / "report.json", report)
    md_path = run_dir / "report.md"
    md_path.write_text(markdown_report(report))
    return json_path, md_path


# --- attack suite and sanity checks ---------------------------------------------------------------
def suite_markdown(report: dict[str, Any]) -> str:
    """Markdown for a report dict holding the attack suite's table (and optionally sanity checks)."""
    lines = [f"# robustad report: {report.get('title', 'attack suite')}", ""]
    data = report.get("data", {})
    if data.get("description"):
        lines += [f"Data: {data['description']}", ""]
    rows = report.get("rows", [])
    if rows:
        suite = report.get("suite", {})
        lines += [
            f"Attack suite `{suite.get('name', '?')}` on {report.get('num_test')} test images "
            f"({report.get('num_test_anomalies')} anomalies), L-inf. Every perturbation is judged on the "
            "detector's real score; the worst case keeps, per image, the strongest of all attacks "
            "(the highest score for a normal image, the lowest for an anomaly), as AutoAttack reports it. "
            "At budgets where only a sweep attack runs, the worst case is over that one attack (see attacks).",
            "",
            "| method | target | eps | clean AUROC % | worst-case AUROC % | attacks | worst case came from (images) | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        clean = {r["method"]: r["auroc"] for r in rows if r["attack"] == "clean"}
        for r in rows:
            if r["attack"] != "worst-case":
                continue
            winners = ", ".join(f"{k} {v}" for k, v in r.get("winners", {}).items())
            lines.append(f"| {r['method']} | {r['target']} | {format_eps(r['eps'])} | {_fmt(clean.get(r['method']))} | "
                         f"**{_fmt(r['auroc'])}** | {r.get('num_attacks', '?')} | {winners} | {r.get('seconds') or 0:.0f} |")
        lines += ["", "Every attack:", "", "| method | target | eps | attack | AUROC % | seconds |", "|---|---|---|---|---|---|"]
        for r in rows:
            seconds = "" if r.get("seconds") is None else f"{r['seconds']:.1f}"
            attack = f"**{r['attack']}**" if r["attack"] == "worst-case" else r["attack"]
            lines.append(f"| {r['method']} | {r['target']} | {format_eps(r['eps'])} | {attack} | {_fmt(r['auroc'])} | {seconds} |")
        skipped = [(r["method"], r["attack"], k, v) for r in rows for k, v in r.get("skipped", {}).items()]
        notes = list(report.get("notes", [])) + [f"{m}, {a}: `{k}` skipped: {v}" for m, a, k, v in dict.fromkeys(
            (m, a, k, v) for m, a, k, v in skipped)]
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        plots = report.get("plots", {})
        if plots.get("auroc_vs_eps"):
            lines += ["", f"![AUROC vs eps]({plots['auroc_vs_eps']})"]
        if plots.get("histograms"):
            lines += ["", f"![score histograms, clean vs worst case]({plots['histograms']})"]
        if report.get("seconds") is not None:
            lines += ["", f"Suite time: {report['seconds']:.0f} s."]
    if report.get("sanity"):
        lines += ["", sanity_markdown(report["sanity"])]
    if report.get("command"):
        lines += ["", f"Command: `{report['command']}`"]
    lines.append("")
    return "\n".join(lines)


def sanity_markdown(sanity: dict[str, Any]) -> str:
    """sanity: {method: SanityReport.to_dict()} -> a Markdown section."""
    lines = ["## Gradient-masking sanity checks", ""]
    for method, rep in sanity.items():
        verdict = "all passed" if rep["passed"] else "FAILED: " + ", ".join(c["name"] for c in rep["checks"] if not c["passed"])
        lines += [f"**{method}**: {verdict}", "", "| check | result | figures | what it means |", "|---|---|---|---|"]
        for c in rep["checks"]:
            figures = "; ".join(f"{k} = {_figure(v)}" for k, v in c["figures"].items())
            lines.append(f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'} | {figures} | {c['explanation']} |")
        lines.append("")
    return "\n".join(lines)


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_figure(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_figure(v) for v in value) + "]"
    return str(value)


def write_suite_report(run_dir: Path, report: dict[str, Any]) -> Path:
    """report.json and report.md for a suite and/or sanity run; returns report.md."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "report.json", report)
    md_path = run_dir / "report.md"
    md_path.write_text(suite_markdown(report))
    return md_path
