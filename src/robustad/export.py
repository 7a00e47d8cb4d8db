"""Deploying a detector outside Python: its whole scoring path as one ONNX graph, and running that graph.

The graph takes float32 images [N, C, H, W] in [0, 1] and returns, per image:
``score`` (the raw anomaly score, as ``detector.score``), ``normalized_score`` (0 to 1, 0.5 at the
threshold, as ``detector.normalized_score``), ``anomalous`` (score > threshold) and ``valid`` (every
pixel finite and in [0, 1]; an invalid image gets a NaN score and the others are unaffected). Inside:
1 or 3 channels brought to the detector's (luma for gray, a repeated gray channel for colour),
the resize to the trained size when the detector resizes its inputs (bilinear, antialiased, as
``prepare``), the network, the feature bank and the score. The threshold, the score's scale and the
detector's checksum are in the model's metadata too. ``export_onnx`` checks, before writing, that
onnxruntime's scores agree with PyTorch's within PARITY_TOLERANCE.

torch.onnx's exporter (torch.export, then onnxscript) writes the graph; onnx adds the metadata;
onnxruntime runs it. They are the optional dependency group ``onnx``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robustad import __version__
from robustad.errors import CheckpointError, ConfigError, InputError, OutputError
from robustad.files import atomic_write
from robustad.methods.base import BaseDetector

__all__ = ["ExportReport", "OnnxDetector", "PARITY_TOLERANCE", "ScoringGraph", "export_onnx"]

FORMAT = "robustad-onnx-1"  # metadata key robustad_format: what this module writes and reads
OPSET = 18  # antialiased Resize needs 18
# exported and PyTorch scores agree within this, relative to the score's size (absolute below 1)
PARITY_TOLERANCE = 1e-4
INPUT, OUTPUTS = "images", ("score", "normalized_score", "anomalous", "valid")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, the weights PIL's convert("L") uses


def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ConfigError(f"ONNX export and scoring need the onnx extras ({err.name} is not installed): "
                          "pip install 'robustad[onnx]', or make env") from None
    return onnx, onnxruntime


class ScoringGraph(nn.Module):
    """The exported function: images -> (score, normalized_score, anomalous, valid)."""

    def __init__(self, detector: BaseDetector):
        super().__init__()
        detector._check_fitted()
        self.scorer = detector.scorer.eval()
        self.in_channels = int(detector.in_channels_)
        self.size = tuple(int(s) for s in detector.image_size_)
        self.resize = detector.resize_to is not None
        threshold = detector.threshold_ if detector.threshold_ is not None else float("nan")
        scale = getattr(detector, "score_scale_", 1.0) or 1.0
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.register_buffer("scale", torch.tensor(float(scale if scale > 0 else 1.0)))

    def channels(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.in_channels == 1:
            # written so that a 1-channel input passes through exactly (its G - R and B - R are 0)
            first, middle, last = x[:, :1], x[:, c // 2 : c // 2 + 1], x[:, c - 1 :]
            return first + LUMA[1] * (middle - first) + LUMA[2] * (last - first)
        # gray repeated 3 times, colour as it is: channel indices (0, 0, 0) for c = 1, (0, 1, 2) for c = 3
        index = torch.arange(3, device=x.device) * (c - 1) // 2
        return x.index_select(1, index)

    def forward(self, images: torch.Tensor):
        valid = (torch.isfinite(images) & (images >= 0) & (images <= 1)).flatten(1).all(dim=1)
        x = torch.where(valid[:, None, None, None], images, torch.zeros_like(images))
        x = self.channels(x)
        if self.resize:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        score = self.scorer(x)
        score = torch.where(valid, score, torch.full_like(score, float("nan")))
        normalized = torch.sigmoid((score - self.threshold) / self.scale)
        return score, normalized, score > self.threshold, valid


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: float  # largest |onnxruntime - PyTorch| score over the parity images
    max_rel_diff: float  # the same over max(1, |score|)
    images_checked: int
    seconds: float
    bytes: int


def _metadata(detector: BaseDetector, source: str | None) -> dict[str, str]:
    seal = None
    if source is not None:
        try:
            seal = json.loads((Path(source) / "detector.json").read_text()).get("detector_sha256")
        except (OSError, ValueError):
            seal = None
    threshold = detector.threshold_
    return {
        "robustad_format": FORMAT,
        "robustad_version": __version__,
        "method": detector.name,
        "in_channels": str(detector.in_channels_),
        "image_size": json.dumps(list(detector.image_size_)),
        "resizes": json.dumps(detector.resize_to is not None),
        "threshold": json.dumps(threshold if threshold is not None and math.isfinite(threshold) else None),
        "score_scale": json.dumps(float(getattr(detector, "score_scale_", 1.0) or 1.0)),
        "target_fpr": json.dumps(getattr(getattr(detector.config, "score", None), "target_fpr", None)),
        "score_batch_size": str(_runtime_batch(detector)),
        "detector_sha256": seal or "",
        "outputs": ",".join(OUTPUTS),
    }


# the exported nearest-neighbour search compares a whole batch's patches with a block of the bank at
# once: at most this many patches per run keeps it near 256 MB (blocks of 4096 bank rows)
MAX_QUERIES = 16384


def _runtime_batch(detector: BaseDetector) -> int:
    """Images per onnxruntime run: up to 64, fewer for detectors with many patches per image."""
    batch = min(64, detector.score_batch_size)
    features = getattr(detector.scorer, "features", None)
    if getattr(detector.scorer, "mode", None) == "patch" and callable(features):
        with torch.no_grad():
            probe = torch.zeros(1, detector.in_channels_, *detector.image_size_, device=detector.device)
            patches = int(features(probe).shape[1])
        batch = min(batch, max(1, MAX_QUERIES // max(1, patches)))
    return batch


def _parity_images(detector: BaseDetector, extra: torch.Tensor | None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (3, detector.in_channels_, *detector.image_size_)
    noise = torch.rand(shape, generator=g)
    smooth = F.avg_pool2d(torch.rand(shape, generator=g), 5, stride=1, padding=2, count_include_pad=False)
    parts = [noise, smooth]
    if extra is not None:
        parts.insert(0, extra)
    return torch.cat(parts)


def export_onnx(detector: BaseDetector, path: str | Path, check_images: torch.Tensor | None = None,
                source: str | None = None) -> ExportReport:
    """Write detector's scoring path to `path` (one .onnx file), after checking its scores against PyTorch.

    check_images: images [N, C, H, W] at the detector's size to compare on (besides noise); source:
    the detector's folder, whose checksum goes into the metadata.
    """
    onnx, ort = _onnx_modules()
    started = time.perf_counter()
    path = Path(path)
    graph = ScoringGraph(detector).eval()
    x = _parity_images(detector, None)[:2]
    batch = torch.export.Dim("batch", min=1)
    dims = {0: batch, 1: torch.export.Dim("channels", min=1, max=3)}
    if graph.resize:
        dims.update({2: torch.export.Dim("height", min=2, max=8192), 3: torch.export.Dim("width", min=2, max=8192)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about packages it does not need
        try:
            program = torch.onnx.export(graph, (x,), dynamo=True, dynamic_shapes=(dims,), opset_version=OPSET,
                                        input_names=[INPUT], output_names=list(OUTPUTS), verbose=False)
        except Exception as err:  # the exporter raises many types; the user needs the first line
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise OutputError(f"{detector.name}: torch.onnx could not export this detector's score ({first})") from None
    model = program.model_proto
    for key, value in _metadata(detector, source).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"robustad {__version__} {detector.name} detector: anomaly scores of images in [0, 1]"
    data = model.SerializeToString()
    onnx.checker.check_model(model)
    # parity before anything is written: the graph as onnxruntime runs it against detector.score
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    images = _parity_images(detector, check_images)
    expected = detector.score(images).double().numpy()
    got = np.concatenate([session.run(["score"], {INPUT: c.numpy()})[0]
                          for c in images.split(_runtime_batch(detector))]).astype(np.float64)
    single = session.run(["score"], {INPUT: images[:1].numpy()})[0].astype(np.float64)
    diff = np.abs(np.concatenate([got - expected, single - expected[:1]]))
    rel = diff / np.maximum(1.0, np.abs(np.concatenate([expected, expected[:1]])))
    if not np.isfinite(got).all() or rel.max() > PARITY_TOLERANCE:
        raise OutputError(f"{detector.name}: the exported scores differ from PyTorch's by up to {rel.max():.2g} "
                          f"(tolerance {PARITY_TOLERANCE:g}), so {path} was not written; please report this")
    atomic_write(path, data)
    return ExportReport(path, float(diff.max()), float(rel.max()), int(images.shape[0]),
                        time.perf_counter() - started, len(data))


class OnnxDetector(BaseDetector):
    """A detector exported by export_onnx, run by onnxruntime: score, predict and normalized_score
    with the same input checks as the PyTorch detector. Not differentiable (no attacks on it)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        onnx, ort = _onnx_modules()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} is not a file; give the .onnx file robustad export wrote")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and friends
            raise CheckpointError(f"{path} is not a readable ONNX model ({type(err).__name__}); "
                                  "export the detector again with robustad export") from None
        meta = {p.key: p.value for p in model.metadata_props}
        if meta.get("robustad_format") != FORMAT:
            raise CheckpointError(f"{path} was not written by robustad export (no {FORMAT} metadata); "
                                  "robustad score --onnx runs only robustad's exports")
        try:
            self.name = meta["method"]
            self.in_channels_ = int(meta["in_channels"])
            self.image_size_ = tuple(int(s) for s in json.loads(meta["image_size"]))
            self.resizes = bool(json.loads(meta["resizes"]))
            threshold = json.loads(meta["threshold"])
            self.threshold_ = float(threshold) if threshold is not None else None
            self.score_scale_ = float(json.loads(meta["score_scale"]))
            self.score_batch_size = max(1, int(meta["score_batch_size"]))
            if self.in_channels_ not in (1, 3) or len(self.image_size_) != 2 or min(self.image_size_) < 1:
                raise ValueError("sizes out of range")
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: its robustad metadata is damaged ({err}); export the detector again") \
                from None
        self.metadata = meta
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.resize_to = self.image_size_[0] if self.resizes else None
        self.scorer = None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _check_fitted(self) -> None:
        pass  # a loaded export is always ready

    def score(self, x) -> torch.Tensor:
        x = self.prepare(x)  # the same checks and (when the detector resizes) the same resize as PyTorch's
        if x.shape[0] == 0:
            return x.new_zeros(0)
        parts = [self.session.run(["score", "valid"], {INPUT: c.detach().numpy()}) for c in x.split(self.score_batch_size)]
        if not all(v.all() for _, v in parts):
            raise InputError("the exported detector found images that are not finite or not in [0, 1]")
        return torch.from_numpy(np.concatenate([s for s, _ in parts]).astype(np.float32))
