"""An ensemble of detectors: each score standardised on the held-out normal images, then summed.

The default for small images (32 px and below) is COBRA with the raw-pixel kNN: on small objects
the pixel distance is hard to move under attack (it is 1-Lipschitz) and COBRA sees what pixels do
not, and together they beat each of them alone, clean and attacked (BENCHMARKS.md, validation
suite). Every member trains on the same images with the same hold-out split; each member's
score is centred and scaled by its median and standard deviation on those held-out images, and
the ensemble's threshold is calibrated on them too.

A saved ensemble is a detector folder whose members are detector folders of their own
(``members/0``, ``members/1``, ...), each with its own checksummed weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustad.config import config_keys, parse_overrides
from robustad.data.cache import sha256_file
from robustad.errors import CheckpointError, ConfigError, DataError
from robustad.methods.base import BaseDetector
from robustad.methods.baseline_common import (
    load_normal_images,
    split_holdout,
)
from robustad.methods.checkpoint import (
    WEIGHTS_FILE,
    calibrate,
    config_from_meta,
    detector_meta,
    load_weights,
    read_checkpoint,
    restore_statistics,
    write_checkpoint,
)
from robustad.methods.ensemble.config import EnsembleConfig
from robustad.provenance import images_digest

__all__ = ["Ensemble", "EnsembleScore"]


MEMBERS_DIR = "members"


# The catalog lists the ensemble among its methods, so the ensemble reaches the catalog (and the
# registry built on it) from inside functions: module-level imports would be a cycle.


def _member_settings(method: str, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """The overrides a member takes (the keys its config has), with the ensemble's seed in its own key."""
    from robustad.methods.catalog import detector_class, method_spec

    config_class = detector_class(method_spec(method).detector).config_class
    own = set(config_class.__dataclass_fields__)
    kept = {k: v for k, v in overrides.items() if k.split(".")[0] in own}
    if "train" in own:
        kept["train.seed"] = seed
    elif "seed" in own:
        kept["seed"] = seed
    return kept


class EnsembleScore(nn.Module):
    """x -> sum over members of (member score - its held-out median) / its held-out standard deviation."""

    def __init__(self, scorers: list[nn.Module], centers: list[float], scales: list[float]):
        super().__init__()
        self.members = nn.ModuleList(scorers)
        self.register_buffer("center", torch.tensor(centers, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scales, dtype=torch.float32))

    def member_terms(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [(m(x) - self.center[i]) / self.scale[i] for i, m in enumerate(self.members)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.member_terms(x)).sum(dim=0)


class Ensemble(BaseDetector):
    """Several detectors trained on the same images, their standardised scores summed.

    >>> det = Ensemble.from_preset("mnist-cpu").fit(normal_images)       # COBRA + raw-pixel kNN
    """

    name = "cobra-ensemble"
    config_class = EnsembleConfig

    @classmethod
    def accepted_overrides(cls, overrides: dict, log=None) -> dict:
        return dict(overrides)  # its own keys stay, the rest go to the members, which check them

    def __init__(self, config: EnsembleConfig | None = None, overrides: dict | list | None = None, **kwargs: Any):
        config = config or EnsembleConfig()
        extra = {k.replace("__", "."): v for k, v in kwargs.items()}
        merged = {**parse_overrides(overrides), **extra}
        own = set(config_keys(EnsembleConfig)) - {"overrides"}  # e.g. score.holdout_fraction; the rest is the members'
        mine = {k: v for k, v in merged.items() if k in own}
        passed = {k: v for k, v in merged.items() if k not in own}
        if "train.seed" in passed:  # the seed of the whole ensemble
            mine["seed"] = passed.pop("train.seed")
        if passed:
            mine["overrides"] = {**config.overrides, **passed}
        self.config = config.with_overrides(mine) if mine else config.validate()
        self.resize_to = self.config.image_size
        self.score_batch_size = self.config.score.batch_size
        self.members_ = self._build_members()  # a member's bad setting fails here, before any work
        self.scorer: EnsembleScore | None = None
        self.fit_info_: dict[str, Any] = {}

    @classmethod
    def from_preset(cls, name: str, overrides: dict | list | None = None, **kwargs: Any) -> "Ensemble":
        return cls(EnsembleConfig.from_preset(name), overrides=overrides, **kwargs)

    def _build_members(self) -> list[BaseDetector]:
        from robustad.methods.catalog import build_detector

        c = self.config
        shared = c.member_overrides()
        return [build_detector(m, c.preset, _member_settings(m, shared, c.seed)) for m in c.members]

    def fit(self, normal_images, run_dir: str | Path | None = None, progress: bool = True, log=None) -> "Ensemble":
        """Fit every member on the same images (with run_dir, each checkpoints in its own subfolder)."""
        started = time.perf_counter()
        x = load_normal_images(normal_images, self.resize_to)
        train_x, holdout_x = split_holdout(x, self.config.score.holdout_fraction, self.config.seed + 1)
        if train_x.shape[0] < 2:
            raise DataError(f"need at least 2 normal training images, got {train_x.shape[0]}")
        if holdout_x.shape[0] < 2:
            raise ConfigError("an ensemble standardises its members on held-out normal images: hold out at least 2 "
                              "(score.holdout_fraction)")
        infos = []
        for i, member in enumerate(self.members_):
            member.fit(x, run_dir=Path(run_dir) / MEMBERS_DIR / str(i) if run_dir is not None else None,
                       progress=progress, log=log)
            infos.append({"method": member.name, **{k: v for k, v in member.fit_info_.items() if k != "history"}})
        self._assemble(x.shape[1], tuple(x.shape[-2:]))
        calibrate(self, holdout_x, self.config.score.target_fpr)
        self.fit_info_ = {
            "num_train": int(train_x.shape[0]), "train_images_digest": images_digest(x),
            "num_holdout": int(holdout_x.shape[0]), "members": infos,
            "train_seconds": sum(float(i.get("train_seconds") or i.get("fit_seconds") or 0.0) for i in infos),
            "fit_seconds": time.perf_counter() - started,
        }
        trained_apart = [i["distributed"] for i in infos if i.get("distributed")]
        if trained_apart:  # the members that train under torchrun share its process group
            self.fit_info_["distributed"] = trained_apart[0]
        return self

    def _assemble(self, in_channels: int, image_size: tuple[int, int]) -> None:
        for member in self.members_:
            if not member.score_scale_ > 0:
                raise CheckpointError(f"ensemble member {member.name} has no spread on the held-out images")
        self.scorer = EnsembleScore([m.scorer for m in self.members_], [m.score_center_ for m in self.members_],
                                    [m.score_scale_ for m in self.members_]).eval()
        self.in_channels_, self.image_size_ = in_channels, image_size

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        for member in self.scorer.members:
            if member.training:
                member.eval()
        return self.scorer(x)

    def save(self, path: str | Path) -> Path:
        """The members in members/<i>/ and the ensemble's own detector.json / detector.safetensors."""
        self._check_fitted()
        path = Path(path)
        digests = []
        for i, member in enumerate(self.members_):
            member.save(path / MEMBERS_DIR / str(i))
            digests.append(_member_digest(path / MEMBERS_DIR / str(i)))
        state = {"center": self.scorer.center, "scale": self.scorer.scale}
        return write_checkpoint(path, state, detector_meta(self, self.config.to_dict(), member_weights=digests))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "Ensemble":
        from robustad.methods.registry import load_detector

        path = Path(path)
        meta, tensors = read_checkpoint(path, cls.name)
        detector = cls(config_from_meta(EnsembleConfig, meta, path))
        members = []
        for i, expected in enumerate(meta.get("member_weights") or []):
            folder = path / MEMBERS_DIR / str(i)
            if _member_digest(folder) != expected:
                raise CheckpointError(f"{folder} is not the member this ensemble was saved with (its weights "
                                      "differ); copy the whole ensemble folder again or re-train")
            members.append(load_detector(folder, device=device))
        if [m.name for m in members] != list(detector.config.members):
            raise CheckpointError(f"{path}: its members/ folders do not hold {detector.config.members}")
        detector.members_ = members
        detector._assemble(int(meta["in_channels"]), tuple(meta["image_size"]))
        load_weights(detector.scorer, {**{f"members.{i}.{k}": v for i, m in enumerate(members)
                                          for k, v in m.scorer.state_dict().items()}, **tensors}, path)
        restore_statistics(detector, meta)
        return detector


def _member_digest(folder: Path) -> str:
    try:
        return sha256_file(folder / WEIGHTS_FILE)
    except OSError:
        raise CheckpointError(f"{folder} is missing: an ensemble's members live in {MEMBERS_DIR}/ next to its "
                              "detector.json") from None
