"""Anomaly maps: pixel AUROC and PRO against ground-truth masks, clean and under an attack on the map.

A detector with ``anomaly_map(x) -> [N, 1, H, W]`` (COBRA-patch) says where an image is anomalous.
The map attack is the image-level attack's counterpart: on normal images it pushes the whole
map up (false alarms everywhere), on defective images it pushes the map down inside the defect
and up outside it, within the same L-inf budget; it is judged on pixel AUROC like the image-level
attacks are on AUROC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from robustad.attacks.pgd import pgd_maximize
from robustad.errors import InputError

__all__ = ["MapResult", "attack_maps", "evaluate_maps", "pixel_auroc", "plot_maps", "pro_auc"]


def _flat(maps: torch.Tensor, masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    if maps.shape != masks.shape:
        raise InputError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must have the same shape")
    return maps.detach().cpu().double().numpy().ravel(), (masks.detach().cpu().numpy().ravel() > 0.5).astype(int)


def pixel_auroc(maps: torch.Tensor, masks: torch.Tensor) -> float:
    """AUROC over every pixel of every image: defect pixels against all others."""
    scores, truth = _flat(maps, masks)
    if truth.min() == truth.max():
        raise InputError("pixel AUROC needs defect and defect-free pixels; the masks hold only one kind")
    return float(roc_auc_score(truth, scores))


def pro_auc(maps: torch.Tensor, masks: torch.Tensor, max_fpr: float = 0.3, thresholds: int = 200) -> float:
    """Area under the per-region-overlap curve up to a pixel false-positive rate of max_fpr, divided by max_fpr.

    Each connected defect region counts equally whatever its size (Bergmann et al., MVTec AD): at
    every threshold, the mean over regions of the share of the region above it, against the share
    of defect-free pixels above it.
    """
    from scipy.ndimage import label

    maps_np = maps.detach().cpu().double().numpy()[:, 0]
    masks_np = masks.detach().cpu().numpy()[:, 0] > 0.5
    regions = []
    for i in range(masks_np.shape[0]):
        labelled, count = label(masks_np[i])
        regions += [(i, labelled == r) for r in range(1, count + 1)]
    if not regions or masks_np.all():
        raise InputError("PRO needs defect regions and defect-free pixels")
    background = maps_np[~masks_np]
    levels = np.unique(np.quantile(background, np.linspace(1.0, max(0.0, 1.0 - 1.2 * max_fpr), thresholds)))[::-1]
    fprs, pros = [0.0], [0.0]
    for t in levels:
        fprs.append(float((background > t).mean()))
        pros.append(float(np.mean([(maps_np[i][region] > t).mean() for i, region in regions])))
    fprs, pros = np.array(fprs), np.array(pros)
    # the curve up to exactly max_fpr (the last point interpolated), then its mean height there
    keep = fprs <= max_fpr
    end = float(np.interp(max_fpr, fprs, pros)) if fprs[-1] >= max_fpr else pros[-1]
    x = np.r_[fprs[keep], max_fpr]
    y = np.r_[pros[keep], end]
    return float(np.trapezoid(y, x) / max_fpr)


def _map_gain(detector, masks: torch.Tensor):
    """Per image: mean map on normal images; outside-minus-inside mean on defective ones."""

    def gain(x: torch.Tensor, y: torch.Tensor, idx_masks: torch.Tensor) -> torch.Tensor:
        maps = detector.anomaly_map(x)[:, 0]
        inside = idx_masks[:, 0].to(maps.dtype)
        outside = 1 - inside
        mean_in = (maps * inside).sum((1, 2)) / inside.sum((1, 2)).clamp_min(1)
        mean_out = (maps * outside).sum((1, 2)) / outside.sum((1, 2)).clamp_min(1)
        return torch.where(y == 0, maps.mean((1, 2)), mean_out - mean_in)

    return gain


def attack_maps(detector, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, eps: float,
                steps: int = 20, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """PGD (L-inf, eps) against the anomaly map (see the module docstring); returns the perturbed images."""
    gain = _map_gain(detector, masks)
    out = images.clone()
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        m = masks[sl]
        out[sl] = pgd_maximize(lambda x, y, m=m: gain(x, y, m), images[sl], labels[sl], eps, steps,
                               schedule="cosine", seed=seed + start, batch_size=batch_size)
    return out


@dataclass
class MapResult:
    pixel_auroc_clean: float
    pixel_auroc_attack: float
    pro_clean: float
    pro_attack: float
    eps: float
    steps: int
    attacked: torch.Tensor = field(repr=False)

    def summary(self) -> dict:
        return {"pixel_auroc_clean": self.pixel_auroc_clean, "pixel_auroc_attack": self.pixel_auroc_attack,
                "pro_clean": self.pro_clean, "pro_attack": self.pro_attack, "eps": self.eps,
                "attack": f"map-pgd-{self.steps}"}


def evaluate_maps(detector, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, eps: float,
                  steps: int = 20, seed: int = 0) -> MapResult:
    """Pixel AUROC and PRO of the detector's maps, clean and under attack_maps."""
    labels = torch.as_tensor(labels).long()
    clean = detector.anomaly_map(images)
    attacked = attack_maps(detector, images, labels, masks, eps, steps, seed)
    adv_maps = detector.anomaly_map(attacked)
    return MapResult(pixel_auroc(clean, masks), pixel_auroc(adv_maps, masks), pro_auc(clean, masks),
                     pro_auc(adv_maps, masks), eps, steps, attacked)


def plot_maps(detector, images: torch.Tensor, masks: torch.Tensor | None, attacked: torch.Tensor | None,
              path: Path, title: str = "", threshold: float | None = None) -> Path:
    """One row per image: the image, its map over it (defect outlined), the attacked image and its map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = detector.anomaly_map(images)[:, 0].cpu()
    adv_maps = detector.anomaly_map(attacked)[:, 0].cpu() if attacked is not None else None
    vmax = float(torch.quantile(maps.flatten(), 0.995))
    vmin = float(maps.min())
    cols = 4 if attacked is not None else 2
    fig, axes = plt.subplots(len(images), cols, figsize=(2.4 * cols, 2.4 * len(images)), squeeze=False)

    def show(ax, img):
        img = img.cpu().permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)

    with torch.no_grad():
        scores = detector.score(images).cpu()
        adv_scores = detector.score(attacked).cpu() if attacked is not None else None

    def verdict(score: float) -> str:
        flagged = threshold is not None and math.isfinite(threshold) and score > threshold
        return f"score {score:.2f}" + (" (flagged)" if flagged else "")

    for i in range(len(images)):
        kind = "test image" if masks is None else "defect" if masks[i].sum() > 0 else "normal"
        panels = [(images[i], None, f"{kind}, {verdict(float(scores[i]))}"), (images[i], maps[i], "anomaly map")]
        if attacked is not None:
            panels += [(attacked[i], None, f"attacked, {verdict(float(adv_scores[i]))}"), (attacked[i], adv_maps[i], "its map")]
        for ax, (img, heat, name) in zip(axes[i], panels):
            show(ax, img)
            if heat is not None:
                ax.imshow(heat.numpy(), cmap="jet", alpha=0.45, vmin=vmin, vmax=vmax)
                if masks is not None and masks[i].sum() > 0:
                    ax.contour(masks[i, 0].cpu().numpy(), levels=[0.5], colors="white", linewidths=0.8)
            if heat is None or i == 0:  # an image's own label on every row; the map columns named once
                ax.set_title(name, fontsize=8)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
