"""Clean and attacked AUROC of a detector on a labelled test set."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from robustad.attacks.base import AttackConfig, as_logits
from robustad.attacks.pgd import attack_pgd
from robustad.errors import ConfigError, InputError
from robustad.evaluation.metrics import auroc, detection_rates

ATTACKS = {"pgd": attack_pgd}


@dataclass
class RobustnessResult:
    auroc_clean: float
    auroc_attack: float
    attack: dict[str, Any]
    scores_clean: torch.Tensor
    scores_attack: torch.Tensor
    labels: torch.Tensor
    seconds_clean: float
    seconds_attack: float
    rates_clean: dict[str, float] = field(default_factory=dict)
    rates_attack: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "auroc_clean": self.auroc_clean,
            "auroc_attack": self.auroc_attack,
            "attack": self.attack,
            "at_threshold_clean": self.rates_clean,
            "at_threshold_attack": self.rates_attack,
            "seconds_clean_scoring": self.seconds_clean,
            "seconds_attack": self.seconds_attack,
            "num_test": int(self.labels.numel()),
            "num_test_anomalies": int(self.labels.sum()),
        }


# the name this module has always exported for robustad.attacks.base.as_logits
score_as_logits = as_logits


def check_labels(images, labels) -> torch.Tensor:
    """Labels as a long CPU tensor with one 0/1 entry per image, or an InputError saying what is off."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != len(images):
        raise InputError(f"need one label per image: {len(images)} images, labels of shape {tuple(labels.shape)}")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise InputError("labels must be 0 (normal) or 1 (anomaly)")
    if labels.numel() and labels.min() == labels.max():
        raise InputError("AUROC needs both normal (0) and anomalous (1) test images; the labels hold only one kind")
    return labels.long().cpu()


def evaluate_robustness(detector, images: torch.Tensor, labels: torch.Tensor, attack: AttackConfig) -> RobustnessResult:
    """AUROC on clean images and on images perturbed by `attack` against the detector's score."""
    attack.validate()
    labels = check_labels(images, labels)
    if attack.name not in ATTACKS:
        raise ConfigError(f"unknown attack {attack.name!r}; available: {', '.join(ATTACKS)}")
    started = time.perf_counter()
    with torch.no_grad():
        clean = detector.score(images).cpu()
    seconds_clean = time.perf_counter() - started
    started = time.perf_counter()
    adversarial = ATTACKS[attack.name](as_logits(detector), images, labels, attack)
    seconds_attack = time.perf_counter() - started
    with torch.no_grad():
        attacked = detector.score(adversarial).cpu()
    threshold = getattr(detector, "threshold_", None)
    has_threshold = threshold is not None and threshold == threshold
    return RobustnessResult(
        auroc_clean=auroc(clean, labels),
        auroc_attack=auroc(attacked, labels),
        attack=attack.to_dict(),
        scores_clean=clean,
        scores_attack=attacked,
        labels=labels,
        seconds_clean=seconds_clean,
        seconds_attack=seconds_attack,
        rates_clean=detection_rates(clean, labels, threshold) if has_threshold else {},
        rates_attack=detection_rates(attacked, labels, threshold) if has_threshold else {},
    )
