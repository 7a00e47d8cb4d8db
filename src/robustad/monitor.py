"""Watching a run in TensorBoard: scalars written as TensorBoard event files (off unless asked for).

The training loop reports through ``robustad.methods.training.training_monitor``, which knows
nothing of TensorBoard; this module is the writer the CLI hands it. Under torchrun only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path

from robustad.errors import ConfigError

__all__ = ["TensorBoardLog"]


class TensorBoardLog:
    """scalar(tag, value, step) into event files in `folder` (tensorboard --logdir folder shows them)."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(f"--tensorboard needs the tensorboard package ({err}); pip install 'robustad[tensorboard]', "
                              "or make env") from None
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"--tensorboard {self.folder} is a file; give a folder for the event files")
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, float(value), int(step))

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()

    def __enter__(self) -> "TensorBoardLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
