"""Errors that robustad raises for problems a user can fix.

Every message says what was wrong and what to do about it; the CLI prints the
message without a traceback.
"""


class RobustADError(Exception):
    """Base class: a problem with the user's input, data, config or checkpoint."""


class DataError(RobustADError):
    """Images or data sets that cannot be used as given."""


class DatasetNotFoundError(DataError):
    """A data set that is not on disk and cannot be fetched here."""


class ConfigError(RobustADError):
    """A config value or override that is invalid."""


class CheckpointError(RobustADError):
    """A checkpoint that is missing, corrupt, or from another version or config."""


class InputError(RobustADError):
    """Tensors passed to the API with the wrong shape, range or values."""


class TrainingDivergedError(RobustADError, FloatingPointError):
    """The training loss became NaN or infinite; the step that caused it was not applied."""


class TrainingPaused(RobustADError):
    """Training stopped at an epoch boundary to keep within a time limit; its checkpoint resumes it.

    Not a failure: the same call again continues from `checkpoint`.
    """

    def __init__(self, message: str, epoch: int, epochs: int, checkpoint):
        super().__init__(message)
        self.epoch, self.epochs, self.checkpoint = epoch, epochs, checkpoint


class OutputError(RobustADError):
    """A result that could not be written (disk full, no permission); earlier files are left as they were."""
