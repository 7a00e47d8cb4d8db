"""Score histograms: normal vs anomalous, clean vs attacked, one row per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_score_histograms(results: dict, path: str | Path) -> Path:
    """results: {method name: RobustnessResult}. Writes one PNG."""
    path = Path(path)
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
    a = next(iter(results.values())).attack
    fig.suptitle(f"{a['name'].upper()}-{a['steps']} eps={a['eps']:.4f} target={a['target']} restarts={a['restarts']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
