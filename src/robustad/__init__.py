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

from robustad.methods.catalog import DETECTOR_CLASSES  # noqa: E402  (light: names only, no torch)

# every detector class by its class name, e.g. robustad.Cobra; each module is imported when first named
_DETECTORS = {cls: module for module, cls in DETECTOR_CLASSES.values()}

__all__ = [
    "__version__",
    *_DETECTORS,
    "load_detector",
    "RobustADError",
    "DataError",
    "DatasetNotFoundError",
    "ConfigError",
    "CheckpointError",
    "InputError",
    "TrainingPaused",
]


def __getattr__(name):
    # Lazy so that `import robustad` stays cheap for the CLI's --help.
    if name in _DETECTORS:
        import importlib

        return getattr(importlib.import_module(_DETECTORS[name]), name)
    if name == "load_detector":
        from robustad.methods.registry import load_detector

        return load_detector
    raise AttributeError(f"module 'robustad' has no attribute {name!r}")
