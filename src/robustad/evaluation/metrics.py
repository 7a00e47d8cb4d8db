"""Detection metrics on anomaly scores (label 1 = anomaly, higher score = more anomalous)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from robustad.errors import InputError


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def auroc(scores, labels) -> float:
    """Image-level AUROC; needs both normal and anomalous images."""
    scores, labels = _numpy(scores).astype(np.float64), _numpy(labels).astype(int)
    if len(np.unique(labels)) != 2:
        raise InputError("AUROC needs both normal (0) and anomalous (1) test images; the test set has one class only")
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite; AUROC is undefined")
    return float(roc_auc_score(labels, scores))


def detection_rates(scores, labels, threshold: float) -> dict[str, float]:
    """False-positive rate on normals and true-positive rate on anomalies at a threshold."""
    scores, labels = _numpy(scores), _numpy(labels).astype(int)
    flagged = scores > threshold
    return {
        "threshold": float(threshold),
        "fpr": float(flagged[labels == 0].mean()) if (labels == 0).any() else float("nan"),
        "tpr": float(flagged[labels == 1].mean()) if (labels == 1).any() else float("nan"),
    }
