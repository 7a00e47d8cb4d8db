"""robustad: adversarially robust image anomaly detection (COBRA and baselines)."""

__version__ = "0.1.0"

from robustad.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    DatasetNotFoundError,
    InputError,
    RobustADError,
)

__all__ = [
    "__version__",
    "Cobra",
    "RobustADError",
    "DataError",
    "DatasetNotFoundError",
    "ConfigError",
    "CheckpointError",
    "InputError",
]


def __getattr__(name):
    # Lazy so that `import robustad` stays cheap for the CLI's --help.
    if name == "Cobra":
        from robustad.methods.cobra.detector import Cobra

        return Cobra
    raise AttributeError(f"module 'robustad' has no attribute {name!r}")
