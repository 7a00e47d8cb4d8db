"""Image transforms: pseudo-anomaly shifts and light contrastive views."""

from robustad.transforms.pseudo_anomaly import (
    PSEUDO_ANOMALY_NAMES,
    PseudoAnomalySet,
    cut_permutation,
    cutout,
    cutpaste_scar,
    elastic,
    rotate90,
)
from robustad.transforms._common import shared_randomness
from robustad.transforms.views import LightViews, ViewConfig

__all__ = [
    "PSEUDO_ANOMALY_NAMES",
    "LightViews",
    "PseudoAnomalySet",
    "ViewConfig",
    "cut_permutation",
    "cutout",
    "cutpaste_scar",
    "elastic",
    "rotate90",
    "shared_randomness",
]
