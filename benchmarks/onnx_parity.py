"""Exported (onnxruntime) against PyTorch scores of a saved detector, on real test images: parity and speed.

    PYTHONPATH=src .venv/bin/python benchmarks/onnx_parity.py runs/demo/cobra-patch --data textures --category brick

Exports the detector (robustad.export.export_onnx, which refuses to write a graph beyond the
tolerance), scores the data set's test images with both, and prints the largest differences, whether
any decision at the threshold differs, and milliseconds per image for each at the same thread count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustad.data.datasets import load_split
from robustad.export import OnnxDetector, export_onnx
from robustad.methods.registry import load_detector


def timed(fn, x, repeats: int = 2) -> tuple[np.ndarray, float]:
    fn(x[:2])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - started)
    return np.asarray(out, dtype=np.float64), 1000 * best / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector")
    parser.add_argument("--data", default="textures")
    parser.add_argument("--category", default="brick")
    parser.add_argument("--max-test", type=int, default=200)
    opts = parser.parse_args()
    det = load_detector(opts.detector)
    split = load_split(opts.data, category=opts.category, max_test=opts.max_test, image_size=det.image_size_[0])
    x = split.test
    with tempfile.TemporaryDirectory() as tmp:
        report = export_onnx(det, Path(tmp) / "model.onnx", check_images=x[:16], source=opts.detector)
        exported = OnnxDetector(Path(tmp) / "model.onnx")
        ref, torch_ms = timed(lambda v: det.decision_function(v), x)
        got, onnx_ms = timed(lambda v: exported.decision_function(v), x)
    diff = np.abs(got - ref)
    rel = diff / np.maximum(1.0, np.abs(ref))
    flips = int(((got > det.threshold_) != (ref > det.threshold_)).sum())
    print(f"{det.name}: {x.shape[0]} test images {tuple(x.shape[1:])}; model {report.bytes / 1e6:.2f} MB, export "
          f"{report.seconds:.0f} s; max |diff| {diff.max():.2e}, max relative {rel.max():.2e}; decisions that differ: "
          f"{flips}; score range {ref.min():.4g}..{ref.max():.4g}; ms per image: PyTorch {torch_ms:.2f}, onnxruntime "
          f"{onnx_ms:.2f} ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
