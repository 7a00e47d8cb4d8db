"""Methods by name: COBRA, its baselines and the paper's loss ablations, built at one budget.

A method is a detector class plus config changes on top of a preset, so every method trained
from the same preset shares backbone family, image size and number of training steps.

    det = build_detector("csi", "mnist-cpu", {"train.epochs": 1})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from robustad.config import parse_overrides
from robustad.errors import ConfigError

__all__ = ["METHODS", "ABLATIONS", "BASELINES", "REFERENCES", "PATCH_REFERENCE_MIN_SIDE", "DETECTOR_CLASSES",
           "MethodSpec", "build_detector", "default_method", "detector_class", "method_spec"]

# detector kind -> (module, class), imported when first needed so that the CLI starts fast
DETECTOR_CLASSES: dict[str, tuple[str, str]] = {
    "cobra": ("robustad.methods.cobra.detector", "Cobra"),
    "cobra-patch": ("robustad.methods.cobra_patch.detector", "PatchCobra"),
    "cobra-ensemble": ("robustad.methods.ensemble.detector", "Ensemble"),
    "deep-svdd": ("robustad.methods.deep_svdd.detector", "DeepSVDD"),
    "knn": ("robustad.methods.knn.detector", "KNNDetector"),
    "pixel-knn": ("robustad.methods.reference.detector", "PixelKNN"),
    "pixel-patch-knn": ("robustad.methods.reference.detector", "PixelPatchKNN"),
    "image-stats": ("robustad.methods.reference.detector", "ImageStats"),
    "pixel-pca": ("robustad.methods.pca.detector", "PixelPCA"),
}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    detector: str  # a key of DETECTOR_CLASSES
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    paper_name: str | None = None  # the row's name in the paper's tables


METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("cobra", "cobra", "COBRA: L_COBRA + L_CLS, adversarial training", paper_name="COBRA"),
    MethodSpec("cobra-patch", "cobra-patch", "COBRA-patch: COBRA's positive and opposite pairs between patch "
               "features of an ImageNet-initialised trunk, adversarially trained; patch-bank score and anomaly maps"),
    MethodSpec("csi", "cobra", "CSI: contrastive learning with shifted instances (L_CL) + shift "
               "prediction, no adversarial training", {"loss.contrastive": "cl", "adversarial.enabled": False},
               paper_name="CSI"),
    MethodSpec("deep-svdd", "deep-svdd", "Deep SVDD: one-class hypersphere, same backbone family"),
    MethodSpec("cobra-ensemble", "cobra-ensemble", "COBRA and the raw-pixel kNN, each standardised on the held-out "
               "normal images, summed (the default at 32 px and below)"),
    MethodSpec("knn", "knn", "kNN on patch features of a non-robust backbone (PatchCore-style, coreset 10%)"),
    MethodSpec("pixel-knn", "pixel-knn", "reference: L2 distance to the nearest training image, on the pixels"),
    MethodSpec("pixel-patch-knn", "pixel-patch-knn", "reference: largest L2 distance of an image's 8x8 pixel "
               "patches to their nearest training patches (anomaly maps)"),
    MethodSpec("pixel-patch-density", "pixel-patch-knn", "reference: pixel-patch-knn with each training patch's "
               "distances divided by its distance to its 3rd-nearest training patch (local density, as in LOF)",
               {"density_k": 3}),
    MethodSpec("image-stats", "image-stats", "reference: Mahalanobis distance of an image's mean and standard deviation"),
    MethodSpec("pixel-pca", "pixel-pca", "reference: distance of an image's pixels from the training images' "
               "principal subspace (PCA reconstruction error, 95% of the variance)"),
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
REFERENCES = ("pixel-knn", "pixel-patch-knn", "pixel-patch-density", "image-stats")  # nothing learned: what every learned detector must beat
# below this side an image is about one 8 px patch, and pixel-patch-knn only repeats pixel-knn
PATCH_REFERENCE_MIN_SIDE = 16
ABLATIONS = ("cobra-no-at", "at-cl", "at-supcon", "at-opposite", "at-cobra-no-cls", "at-cls")


def default_method(image_side: int | None) -> str:
    """The method robustad trains when none is named, chosen by the images' larger side.

    Above the low-resolution limit (32 px: surfaces, parts, tissue), COBRA-patch. At 32 px and below
    (small objects), COBRA together with the raw-pixel kNN, which beat each of them alone there.
    The measurements behind both choices are in BENCHMARKS.md (validation suite).
    """
    from robustad.data.registry import LOW_RES_SIDE  # here: the registry loads every format; --help reads this module

    return "cobra-ensemble" if image_side is not None and image_side <= LOW_RES_SIDE else "cobra-patch"


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def detector_class(kind: str):
    """The detector class of a kind (a key of DETECTOR_CLASSES)."""
    import importlib

    if kind not in DETECTOR_CLASSES:
        raise ConfigError(f"unknown detector {kind!r}; known: {', '.join(DETECTOR_CLASSES)}")
    module, name = DETECTOR_CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def build_detector(method: str, preset: str, overrides: dict | list | None = None,
                   log: Callable[[str], None] | None = None):
    """An unfitted detector for `method`, configured from `preset` plus `overrides`."""
    spec = method_spec(method)
    cls = detector_class(spec.detector)
    changes = cls.accepted_overrides(parse_overrides(overrides), log)
    return cls.from_preset(preset, overrides={**changes, **spec.overrides})
