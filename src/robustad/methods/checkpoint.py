"""Saving and loading detectors: detector.safetensors (weights, feature banks) next to
detector.json (method, config, threshold, statistics, versions). Shared by every method, so a
folder written by one is recognised, and refused with a clear message, by the others.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

import robustad
from robustad.config import MAX_IMAGE_SIZE
from robustad.data.cache import sha256_file
from robustad.errors import CheckpointError, ConfigError, TrainingDivergedError
from robustad.files import atomic_write
from robustad.methods.base import BaseDetector
from robustad.provenance import CHECKPOINT_FORMAT, library_versions
from robustad.runtime import resolve_device

WEIGHTS_FILE = "detector.safetensors"
META_FILE = "detector.json"
MAX_META_BYTES = 16 << 20  # a detector.json is a few kilobytes


# how sure the threshold's false-positive rate is stated: a two-sided interval of this probability
CALIBRATION_CONFIDENCE = 0.9


def fpr_interval(num_holdout: int, num_above: int, confidence: float = CALIBRATION_CONFIDENCE) -> tuple[float, float]:
    """Interval for the false-positive rate on new normal images of a threshold set between held-out scores.

    With the threshold at or above the r-th smallest of n held-out normal scores (r = n - num_above),
    the share of new normal scores above it is Beta(n - r + 1, r) distributed (order statistics of an
    exchangeable sample); its central `confidence` interval is returned.
    """
    from scipy.stats import beta

    r = num_holdout - num_above
    if num_holdout == 0 or r == 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    lo, hi = beta.ppf([tail, 1 - tail], num_holdout - r + 1, r)
    return float(lo), float(hi)


def calibrate(detector: BaseDetector, holdout_x: torch.Tensor, target_fpr: float) -> None:
    """Threshold at the target false-positive rate on held-out normals, plus centre/scale for attacks.

    detector.calibration_ records how many held-out images set the threshold and the interval of the
    false-positive rate it gives on new normal images (fpr_interval); "too_few" is True when that
    interval reaches beyond three times the target, i.e. the hold-out set is too small for the rate
    asked for (7 images for 5%, say; 50 give about 1-11%, which passes).
    """
    if holdout_x.shape[0] == 0:
        detector.threshold_ = float("nan")
        detector.score_center_, detector.score_scale_ = 0.0, 1.0
        detector.calibration_ = {"num_holdout": 0, "target_fpr": target_fpr, "too_few": True}
        return
    scores = detector.score(holdout_x).double()
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise TrainingDivergedError(
            f"the trained {detector.name} detector scores {bad} of {scores.numel()} held-out normal images as NaN or "
            "infinite: training diverged; lower the learning rate (--set train.lr=...) and train again "
            "(the detector was not saved)")
    detector.threshold_ = float(torch.quantile(scores, 1.0 - target_fpr))
    detector.score_center_ = float(scores.median())
    detector.score_scale_ = float(scores.std()) if scores.numel() > 1 and scores.std() > 0 else 1.0
    n, above = int(scores.numel()), int((scores > detector.threshold_).sum())
    lo, hi = fpr_interval(n, above)
    detector.calibration_ = {"num_holdout": n, "target_fpr": target_fpr, "holdout_above": above,
                             "fpr_interval": [lo, hi], "confidence": CALIBRATION_CONFIDENCE,
                             "too_few": hi > 3 * target_fpr}


def calibration_summary(detector: BaseDetector) -> str:
    """One line on the threshold: its target rate, the interval that rate really has, and a warning."""
    info = getattr(detector, "calibration_", None) or {}
    n, target = info.get("num_holdout", 0), info.get("target_fpr")
    if not n:
        return "no held-out normal images: no threshold (set score.holdout_fraction > 0, e.g. --holdout 0.2)"
    lo, hi = info["fpr_interval"]
    line = (f"false positives on new normal images: {100 * lo:.1f}-{100 * hi:.1f}% "
            f"({info['confidence']:.0%} interval from {n} held-out images)")
    if info.get("too_few"):
        line += (f"; too few held-out images for a {target:.0%} target: hold out more "
                 "(--holdout, score.holdout_fraction) or train on more normal images")
    return line


def detector_meta(detector: BaseDetector, config: dict, **extra: Any) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": "robustad-detector",
        "method": detector.name,
        "robustad_version": robustad.__version__,
        "config": config,
        **extra,
        "in_channels": detector.in_channels_,
        "image_size": list(detector.image_size_),
        # null, not NaN, when there is no threshold (fitted without held-out images): load refuses NaN
        "threshold": detector.threshold_ if detector.threshold_ is not None and math.isfinite(detector.threshold_)
        else None,
        "score_center": detector.score_center_,
        "score_scale": detector.score_scale_,
        "calibration": getattr(detector, "calibration_", None),
        "fit_info": detector.fit_info_,
        "library_versions": library_versions(),
    }


def fit_record(train_x: torch.Tensor, holdout_x: torch.Tensor, digest: str, started: float, report: Any = None,
               **extra: Any) -> dict[str, Any]:
    """What a detector's fit records (detector.json's fit_info): image counts and digest, its own `extra`,
    the time fit took since `started` (time.perf_counter) and, for a trained network, its TrainReport's figures."""
    record = {"num_train": int(train_x.shape[0]), "train_images_digest": digest,
              "num_holdout": int(holdout_x.shape[0]), **extra, "fit_seconds": time.perf_counter() - started}
    if report is not None:
        record.update(train_seconds=report.seconds, train_images_per_second=report.images_per_second,
                      history=report.history)
        if report.distributed:
            record["distributed"] = report.distributed
    return record


class SavesScorer:
    """save() and load() for a detector whose weights are its scorer's state: detector.safetensors (with
    the feature bank, when there is one) and detector.json (config, threshold, statistics).

    A detector says where its config keeps the device (`device_field`) and rebuilds its untrained
    scorer, shaped as the file says, in `_rebuild`; the rest is the same for every detector.
    """

    device_field = "train.device"

    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        return write_checkpoint(path, self.scorer.state_dict(),
                                detector_meta(self, self.config.to_dict(), **self._extra_meta()))

    def _extra_meta(self) -> dict[str, Any]:
        """More keys for detector.json (a second config, say)."""
        return {}

    @classmethod
    def load(cls, path: str | Path, device: str | None = None):
        meta, tensors = read_checkpoint(path, cls.name)
        config = config_from_meta(cls.config_class, meta, path)
        section, _, key = cls.device_field.rpartition(".")
        holder = getattr(config, section) if section else config
        if device is not None:
            setattr(holder, key, device)
        in_channels, image_size = int(meta["in_channels"]), tuple(meta["image_size"])
        detector = cls._rebuild(config, meta, tensors, in_channels, image_size, path)
        if "bank" in tensors and hasattr(detector.scorer, "bank"):
            detector.scorer.bank = torch.empty_like(tensors["bank"])  # the bank's size comes from the file
        load_weights(detector.scorer, tensors, path)
        detector.scorer.to(resolve_device(getattr(holder, key))).eval()
        detector.in_channels_, detector.image_size_ = in_channels, image_size
        restore_statistics(detector, meta)
        return detector

    @classmethod
    def _rebuild(cls, config, meta: dict[str, Any], tensors: dict[str, torch.Tensor], in_channels: int,
                 image_size: tuple[int, int], path: str | Path):
        """A detector with `config` and an untrained scorer of the saved shapes, on the CPU."""
        raise NotImplementedError


def writable_folder(path: str | Path, hint: str) -> Path:
    """Try writing into `path` now (made for the trial and removed again if it did not exist), so that
    a file in the way or a missing permission is reported (CheckpointError ending in `hint`) before
    any work rather than after it."""
    path = Path(path)
    missing = []  # folders made only for the trial, removed again after it
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise CheckpointError(f"cannot write into {path}: a file is in the way ({part} is a file, not a folder); {hint}")
            break
        missing.append(part)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise CheckpointError(f"cannot write into {path}: {err.strerror or err}; {hint}") from None
    finally:
        for part in missing:
            try:
                part.rmdir()
            except OSError:
                break
    return path


def write_checkpoint(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """detector.safetensors + detector.json, each replaced atomically."""
    path = writable_folder(path, "save the detector to another folder (a detector is a folder)")
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise TrainingDivergedError(f"not saving a detector with NaN or infinite weights ({', '.join(broken[:3])}"
                                    f"{', ...' if len(broken) > 3 else ''}): training diverged; lower the learning "
                                    "rate (--set train.lr=...) and train again")
    weights = save_tensors(tensors)
    meta = seal_meta({k: v for k, v in meta.items() if k != SEAL_KEY}, hashlib.sha256(weights).hexdigest())
    atomic_write(path / WEIGHTS_FILE, weights)
    atomic_write(path / META_FILE, json.dumps(meta, indent=2, default=float))
    return path


SEAL_KEY = "detector_sha256"


def _seal(meta: dict[str, Any]) -> str:
    """sha256 of detector.json's content (every field but the seal itself, keys sorted), which includes the
    weights' own sha256: one checksum over the whole detector."""
    body = {k: v for k, v in meta.items() if k != SEAL_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=float).encode()).hexdigest()


def seal_meta(meta: dict[str, Any], weights_sha256: str) -> dict[str, Any]:
    """meta with the weights' checksum and the seal over both (as they will read back from JSON)."""
    meta = json.loads(json.dumps({**meta, "weights_sha256": weights_sha256}, default=float))
    return {**meta, SEAL_KEY: _seal(meta)}


def read_meta(path: str | Path) -> dict[str, Any]:
    """detector.json of a detector folder, checked to be one (any method)."""
    path = Path(path)
    meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise CheckpointError(
            f"{path} is not a robustad detector: it needs {META_FILE} and {WEIGHTS_FILE} "
            "(as written by save() or `robustad train`)"
        )
    if (size := meta_path.stat().st_size) > MAX_META_BYTES:
        raise CheckpointError(f"{meta_path} is {size:,} bytes, far more than a detector.json "
                              "holds; the checkpoint is corrupt: copy it again or re-train")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        what = "nested too deeply" if isinstance(err, RecursionError) else err
        raise CheckpointError(f"{meta_path} is not valid JSON ({what}); the checkpoint is corrupt") from None
    if not isinstance(meta, dict) or meta.get("kind") != "robustad-detector":
        raise CheckpointError(f"{meta_path} does not describe a robustad detector (no kind: robustad-detector)")
    if not isinstance(meta.get("fit_info", {}), dict):
        raise CheckpointError(f"{meta_path} is damaged: fit_info should be a mapping, not {meta['fit_info']!r}. "
                              "Re-train or copy it again.")
    return meta


def read_checkpoint(path: str | Path, method: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(meta, tensors) of a `method` checkpoint; CheckpointError for anything else."""
    path = Path(path)
    meta = read_meta(path)
    if meta.get("method") != method:
        raise CheckpointError(
            f"{path} holds a {meta.get('method', 'unknown')!r} checkpoint, not a {method!r} one; "
            "robustad.methods.registry.load_detector picks the right class by itself"
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {meta.get('format')} (written by robustad "
            f"{meta.get('robustad_version')}); this robustad {robustad.__version__} reads format "
            f"{CHECKPOINT_FORMAT}. Re-train, or install the robustad version that wrote it."
        )
    _check_meta_fields(meta, path)
    seal, expected = meta.get(SEAL_KEY), meta.get("weights_sha256")
    if not isinstance(seal, str) or not isinstance(expected, str):
        raise CheckpointError(
            f"{path / META_FILE} has no checksum ({SEAL_KEY} and weights_sha256): it was saved by an earlier "
            "robustad, before detectors carried one, or rewritten by hand. Re-train it (or load it with the robustad that saved it and "
            "save it again)."
        )
    if _seal(meta) != seal:
        raise CheckpointError(
            f"{path / META_FILE} does not match its own checksum: it was edited or damaged after it was saved "
            "(its threshold, config or statistics may no longer be the trained ones). Copy the folder again or "
            "re-train."
        )
    if sha256_file(path / WEIGHTS_FILE) != expected:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE} does not match the checksum in {META_FILE}: it was changed or damaged "
            "after it was saved (or the two files come from different saves). Copy the folder again or re-train."
        )
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path / WEIGHTS_FILE} is not a readable safetensors file ({err})") from None
    return meta, tensors


def _check_meta_fields(meta: dict[str, Any], path: Path) -> None:
    """The top-level fields load() reads, with the types it needs (a hand-edited file fails here)."""
    number = (int, float)
    problems = []
    channels = meta.get("in_channels")
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 4:
        problems.append(f"in_channels should be an integer from 1 to 4, not {channels!r}")
    size = meta.get("image_size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIZE for v in size)):
        problems.append(f"image_size should be [height, width], each 1 to {MAX_IMAGE_SIZE}, not {size!r}")
    for key in ("threshold", "score_center", "score_scale"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, number) or isinstance(value, bool)):
            problems.append(f"{key} should be a number, not {value!r}")
    if problems:
        raise CheckpointError(f"{path / META_FILE} is damaged: " + "; ".join(problems) + ". Re-train or copy it again.")


def config_from_meta(cls, meta: dict[str, Any], path, key: str = "config"):
    try:
        return cls.from_dict(meta[key], source=str(Path(path) / META_FILE))
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: its {key} does not fit this robustad version: {err}") from None


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], path) -> None:
    try:
        module.load_state_dict(tensors)
    except RuntimeError as err:
        first = " ".join(str(err).splitlines()[0:3])
        raise CheckpointError(
            f"{Path(path) / WEIGHTS_FILE} does not match the config in {Path(path) / META_FILE} ({first}); "
            "the two files come from different runs"
        ) from None


def _finite_number(meta: dict[str, Any], key: str, default: float | None, positive: bool = False) -> float | None:
    """meta[key] as a float, refused unless finite (and > 0 where positive): an edited or damaged
    detector.json must not decide with NaN or infinite thresholds."""
    value = meta.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            positive and value <= 0):
        raise CheckpointError(f"detector.json: {key} must be a finite number{' > 0' if positive else ''}, got "
                              f"{value!r}; the file was edited or damaged: copy the detector again or re-train it")
    return float(value)


def restore_statistics(detector: BaseDetector, meta: dict[str, Any]) -> None:
    threshold = _finite_number(meta, "threshold", None)  # null: fitted without held-out images
    detector.threshold_ = threshold if threshold is not None else float("nan")
    detector.score_center_ = _finite_number(meta, "score_center", 0.0)
    detector.score_scale_ = _finite_number(meta, "score_scale", 1.0, positive=True)
    detector.calibration_ = meta.get("calibration") if isinstance(meta.get("calibration"), dict) else None
    detector.fit_info_ = meta.get("fit_info", {})
