"""Score histograms: normal vs anomalous, clean vs attacked, one row per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robustad.config import format_eps  # noqa: E402


def plot_score_histograms(results: dict, path: str | Path, title: str | None = None) -> Path:
    """results: {method name: RobustnessResult}. Writes one PNG; title defaults to the attack's settings."""
    path = Path(path)
    suptitle = title  # `title` is reused by the panel loop below
    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.2 * len(results)), squeeze=False)
    for row, (name, result) in enumerate(results.items()):
        labels = result.labels.numpy()
        clean, attacked = result.scores_clean.numpy(), result.scores_attack.numpy()
        both = np.concatenate([clean, attacked])
        bins = np.linspace(np.percentile(both, 0.5), np.percentile(both, 99.5), 50)
        panels = (("clean", clean, result.auroc_clean), ("attacked", attacked, result.auroc_attack))
        for col, (title, scores, value) in enumerate(panels):
            ax = axes[row, col]
            ax.hist(np.clip(scores[labels == 0], bins[0], bins[-1]), bins, alpha=0.6, label="normal", color="tab:blue")
            ax.hist(np.clip(scores[labels == 1], bins[0], bins[-1]), bins, alpha=0.6, label="anomalous", color="tab:red")
            ax.set_title(f"{name}, {title}: AUROC {100 * value:.1f}%")
            ax.set_xlabel("anomaly score (higher = more anomalous)")
            ax.legend()
    if suptitle is None:
        a = next(iter(results.values())).attack
        suptitle = f"{a['name'].upper()}-{a['steps']}, eps {format_eps(a['eps'])}, target {a['target']}, restarts {a['restarts']}"
    fig.suptitle(suptitle)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_auroc_vs_eps(rows: list[dict], path: str | Path) -> Path:
    """AUROC against the L-inf budget: one panel per (method, target), one line per attack.

    rows: the attack suite's table (method, attack, target, eps, auroc). The clean AUROC is the
    point at eps = 0 of every line; the worst case over attacks is drawn thick and black.
    """
    path = Path(path)
    clean = {r["method"]: r["auroc"] for r in rows if r["attack"] == "clean"}
    panels: dict[tuple, dict[str, list]] = {}
    for r in rows:
        if r["attack"] == "clean":
            continue
        panels.setdefault((r["method"], r["target"]), {}).setdefault(r["attack"], []).append((r["eps"], r["auroc"]))
    if not panels:
        panels = {(m, "none"): {} for m in clean}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, ((method, target), lines) in zip(axes[0], panels.items()):
        for attack, points in sorted(lines.items(), key=lambda kv: (kv[0] == "worst-case", kv[0])):
            points = sorted(set(points) | ({(0.0, clean[method])} if method in clean else set()))
            xs, ys = [255 * p[0] for p in points], [100 * p[1] for p in points]
            worst = attack == "worst-case"
            ax.plot(xs, ys, "-o" if len(points) > 1 else "o", label=attack, color="black" if worst else None,
                    linewidth=2.5 if worst else 1.2, markersize=4, alpha=1.0 if worst else 0.8)
        ax.set_title(f"{method}, target={target}")
        ax.set_xlabel("eps (x/255, L-inf)")
        ax.set_ylabel("AUROC %")
        ax.set_ylim(-2, 102)
        ax.axhline(50, color="grey", linestyle=":", linewidth=0.8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
