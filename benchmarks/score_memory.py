"""Peak memory of `robustad score` over many large images (issue 22's target: 2,000 images of 1024 px under 1.5 GB).

    .venv/bin/python benchmarks/score_memory.py --images 2000 --side 1024

Writes `--images` colour PNGs of `--side` px (smooth random fields, so the files stay small on disk)
into a temporary folder, trains the default detector for 64 px images on 40 of them resized to
64 px (`robustad train --image-size 64`, a few steps: memory, not accuracy, is measured), then
runs `robustad score` over all of them at full size (the detector resizes them to 64 px itself;
`--resize` shrinks each as it is read instead) in a child process, and prints that process's peak
resident memory (its own ru_maxrss) and wall time. `--batch-size 0` leaves the option out, for
a robustad from before score streamed (run with PYTHONPATH pointing at its src/).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, count: int, side: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        coarse = rng.random((8, 8, 3))
        field = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC))
        Image.fromarray(field).save(folder / f"{i:05d}.png", compress_level=1)


# runs robustad in a child that reports its own peak resident memory (KB) as the last line of stderr
_MEASURED = ("import resource, runpy, sys\n"
             "sys.argv = ['robustad', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('robustad', run_name='__main__')\n"
             "finally:\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def robustad(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8, help="score's --batch-size (0: leave the option out)")
    p.add_argument("--resize", action="store_true",
                   help="pass score --resize (each image shrunk as it is read); default: the detector resizes "
                        "full-size images itself, the case that used to hold every image at full size")
    p.add_argument("--method", default=None, help="detector to train (default: robustad's default for 64 px)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_images(root / "images", args.images, args.side)
        write_images(root / "train", 40, args.side, seed=1)
        written = time.perf_counter() - started
        method = ["--method", args.method] if args.method else []
        trained = robustad("train", "--data", "folder", "--normal-dir", str(root / "train"), "--image-size", "64",
                           *method, "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2",
                           "--out", str(root / "det"), "--quiet")
        if trained.returncode != 0:
            sys.exit(f"training failed: {trained.stderr.strip().splitlines()[-1]}")
        started = time.perf_counter()
        resize = ["--resize"] if args.resize else []
        batch = ["--batch-size", str(args.batch_size)] if args.batch_size else []  # 0: a robustad without the option
        scored = robustad("score", "--detector", str(root / "det"), str(root / "images"), *resize, *batch,
                          "--out", str(root / "scores.csv"))
        seconds = time.perf_counter() - started
        lines = scored.stderr.strip().splitlines()
        if scored.returncode != 0:
            sys.exit(f"scoring failed: {lines[-2] if len(lines) > 1 else lines}")
        peak_kb = int(lines[-1])
        rows = len((root / "scores.csv").read_text().splitlines()) - 1
        print(json.dumps({"images": args.images, "side": args.side, "resize": args.resize, "batch_size": args.batch_size,
                          "rows": rows,
                          "peak_rss_mb": round(peak_kb / 1024),
                          "score_seconds": round(seconds, 1), "writing_images_seconds": round(written, 1)}))


if __name__ == "__main__":
    main()
