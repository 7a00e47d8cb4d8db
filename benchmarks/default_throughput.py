"""Training throughput of the default detector per preset, before and after the default changed.

    .venv/bin/python benchmarks/default_throughput.py --steps 20

Before: COBRA at the data set's CPU preset (the default until the twelfth session). After: the
method robustad now picks by image size (cobra-patch above 32 px, cobra-ensemble at 32 px and
below, whose pixel-kNN member trains nothing). Each detector is fitted on random images of the
preset's size (throughput does not depend on content) for `--steps` training steps, and the
figure is the training loop's own count: normal images consumed per second of training.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from robustad.methods.catalog import build_detector, default_method

CASES = {  # preset -> (image side, channels) of its data set
    "mnist-cpu": (28, 1),
    "fashion-mnist-cpu": (28, 1),
    "textures-cpu": (64, 1),
    "surfaces-cpu": (64, 1),
    "mvtec-cpu": (64, 3),
}


def images_per_second(method: str, preset: str, side: int, channels: int, steps: int) -> float:
    overrides = {"train.epochs": 1, "train.steps_per_epoch": steps}
    detector = build_detector(method, preset, overrides=overrides)
    x = torch.rand(320, channels, side, side, generator=torch.Generator().manual_seed(0))
    detector.fit(x, progress=False)
    # the training time of every member (an ensemble's pixel kNN trains nothing), per normal image consumed
    batch = detector.members_[0].config.train.batch_size if hasattr(detector, "members_") else detector.config.train.batch_size
    return steps * batch / detector.fit_info_["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--presets", default=",".join(CASES))
    args = parser.parse_args()
    for preset in args.presets.split(","):
        side, channels = CASES[preset]
        after = default_method(side)
        row = {"preset": preset, "image": f"{channels}x{side}x{side}",
               "before (cobra)": round(images_per_second("cobra", preset, side, channels, args.steps), 1),
               f"after ({after})": round(images_per_second(after, preset, side, channels, args.steps), 1)}
        print(json.dumps(row), flush=True)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
