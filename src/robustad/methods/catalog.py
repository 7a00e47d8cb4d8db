"""Methods by name: COBRA, its baselines and the paper's loss ablations, built at one budget.

A method is a detector class plus config changes on top of a preset, so every method trained
from the same preset shares backbone family, image size and number of training steps.

    det = build_detector("csi", "mnist-cpu", {"train.epochs": 1})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from robustad.errors import ConfigError

__all__ = ["METHODS", "ABLATIONS", "BASELINES", "MethodSpec", "build_detector", "method_spec"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    detector: str  # "cobra" | "deep-svdd" | "knn"
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    paper_name: str | None = None  # the row's name in the paper's tables


METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("cobra", "cobra", "COBRA: L_COBRA + L_CLS, adversarial training", paper_name="COBRA"),
    MethodSpec("csi", "cobra", "CSI: contrastive learning with shifted instances (L_CL) + shift "
               "prediction, no adversarial training", {"loss.contrastive": "cl", "adversarial.enabled": False},
               paper_name="CSI"),
    MethodSpec("deep-svdd", "deep-svdd", "Deep SVDD: one-class hypersphere, same backbone family"),
    MethodSpec("knn", "knn", "kNN on patch features of a non-robust backbone (PatchCore-style, coreset 10%)"),
    MethodSpec("cobra-no-at", "cobra", "COBRA's loss without adversarial examples",
               {"adversarial.enabled": False}),
    MethodSpec("at-cl", "cobra", "ablation: adversarially trained L_CL only",
               {"loss.contrastive": "cl", "loss.classification": False}, paper_name="L_CL"),
    MethodSpec("at-supcon", "cobra", "ablation: supervised contrastive (normal vs pseudo-anomaly), AT",
               {"loss.contrastive": "supcon", "loss.classification": False}, paper_name="supervised contrastive"),
    MethodSpec("at-opposite", "cobra", "ablation: opposite-pair term alone, AT",
               {"loss.contrastive": "opposite", "loss.classification": False}, paper_name="opposite term alone"),
    MethodSpec("at-cobra-no-cls", "cobra", "ablation: L_COBRA without L_CLS, AT",
               {"loss.classification": False}, paper_name="L_COBRA"),
    MethodSpec("at-cls", "cobra", "ablation: L_CLS alone (shift prediction), AT",
               {"loss.contrastive": "none"}, paper_name="L_CLS alone"),
)}
BASELINES = ("csi", "deep-svdd", "knn")
ABLATIONS = ("cobra-no-at", "at-cl", "at-supcon", "at-opposite", "at-cobra-no-cls", "at-cls")

# sections of a COBRA config that the other detectors do not have
_COBRA_ONLY = ("loss.", "adversarial.", "transforms.", "model.projection_dim")


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def _split_overrides(spec: MethodSpec, overrides: dict[str, Any], log: Callable[[str], None] | None):
    if spec.detector == "cobra":
        return {**overrides, **spec.overrides}
    kept = {k: v for k, v in overrides.items() if not k.startswith(_COBRA_ONLY)}
    dropped = [k for k in overrides if k.startswith(_COBRA_ONLY)]
    if spec.detector == "knn":  # the backbone is a COBRA network: its keys go to the backbone config
        from robustad.methods.knn import KNNConfig

        own = set(KNNConfig.__dataclass_fields__)
        knn = {k: v for k, v in kept.items() if k.split(".")[0] in own}
        backbone = {k: v for k, v in overrides.items() if k.split(".")[0] not in own}
        if backbone:
            knn["backbone_overrides"] = backbone
        return knn
    if dropped and log is not None:
        log(f"{spec.name}: ignoring COBRA-only settings {', '.join(dropped)}")
    return kept


def build_detector(method: str, preset: str, overrides: dict | list | None = None,
                   log: Callable[[str], None] | None = None):
    """An unfitted detector for `method`, configured from `preset` plus `overrides`."""
    from robustad.config import _parse_overrides

    spec = method_spec(method)
    changes = _split_overrides(spec, _parse_overrides(overrides), log)
    if spec.detector == "cobra":
        from robustad.methods.cobra.detector import Cobra

        return Cobra.from_preset(preset, overrides=changes)
    if spec.detector == "deep-svdd":
        from robustad.methods.deep_svdd import DeepSVDD

        return DeepSVDD.from_preset(preset, overrides=changes)
    from robustad.methods.knn import KNNDetector

    return KNNDetector.from_preset(preset, overrides=changes)
