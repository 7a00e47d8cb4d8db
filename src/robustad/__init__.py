"""robustad: adversarially robust image anomaly detection (COBRA and baselines)."""

__version__ = "0.1.0"

from robustad.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    DatasetNotFoundError,
    InputError,
    RobustADError,
    TrainingPaused,
)

__all__ = [
    "__version__",
    "Cobra",
    "DeepSVDD",
    "KNNDetector",
    "PatchCobra",
    "Ensemble",
    "PixelKNN",
    "PixelPatchKNN",
    "ImageStats",
    "load_detector",
    "RobustADError",
    "DataError",
    "DatasetNotFoundError",
    "ConfigError",
    "CheckpointError",
    "InputError",
    "TrainingPaused",
]


_DETECTORS = {
    "Cobra": "robustad.methods.cobra.detector",
    "DeepSVDD": "robustad.methods.deep_svdd.detector",
    "KNNDetector": "robustad.methods.knn.detector",
    "PatchCobra": "robustad.methods.cobra_patch.detector",
    "Ensemble": "robustad.methods.ensemble.detector",
    "PixelKNN": "robustad.methods.reference.detector",
    "PixelPatchKNN": "robustad.methods.reference.detector",
    "ImageStats": "robustad.methods.reference.detector",
}


def __getattr__(name):
    # Lazy so that `import robustad` stays cheap for the CLI's --help.
    if name in _DETECTORS:
        import importlib

        return getattr(importlib.import_module(_DETECTORS[name]), name)
    if name == "load_detector":
        from robustad.methods.registry import load_detector

        return load_detector
    raise AttributeError(f"module 'robustad' has no attribute {name!r}")
