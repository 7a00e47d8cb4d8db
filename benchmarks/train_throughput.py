"""Training throughput of the COBRA step: normal images per second, per preset and mode.

    .venv/bin/python benchmarks/train_throughput.py --preset cpu-small --steps 5
    python benchmarks/train_throughput.py --preset fashion-mnist-paper --size 32 --only paper   # a GPU
Uses random grayscale images (throughput does not depend on content) and the training loop's
own step; the first step is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from robustad.methods.cobra.config import CobraConfig
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.training import make_optimizer, training_step
from robustad.runtime import resolve_device
from robustad.models.heads import ShiftContrastiveNet
from robustad.transforms import LightViews, PseudoAnomalySet, ViewConfig


def measure(config: CobraConfig, size: int, channels: int, steps: int) -> float:
    device = resolve_device(config.train.device)
    pseudo = PseudoAnomalySet(config.transforms.pseudo_anomalies)
    torch.manual_seed(0)
    net = ShiftContrastiveNet(channels, pseudo.num_shifts, config.model.width, config.model.stem).to(device)
    objective = CobraObjective(net, pseudo, LightViews(ViewConfig()), config.loss, config.adversarial)
    optimizer = make_optimizer(net, config.train)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(config.train.batch_size, channels, size, size, device=device)
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        training_step(objective, optimizer, x, generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.train.batch_size / (time.perf_counter() - started)


SETTINGS = {
    "none": ("no adversarial training", {"adversarial.enabled": False}),
    "paper": ("adversarial, mode=paper", {"adversarial.mode": "paper"}),
    "reference": ("adversarial, mode=reference", {"adversarial.mode": "reference"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every setting, e.g. train.batch_size=128")
    parser.add_argument("--only", choices=list(SETTINGS), action="append",
                        help="measure only this setting (repeatable; default: all three)")
    args = parser.parse_args()
    rows = []
    base = CobraConfig.from_preset(args.preset).with_overrides(args.set)
    for key in args.only or SETTINGS:
        label, overrides = SETTINGS[key]
        config = base.with_overrides(overrides)
        rows.append({"setting": label, "images_per_second": round(measure(config, args.size, args.channels, args.steps), 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"preset": args.preset, "size": args.size, "overrides": args.set, "torch": torch.__version__,
                      "device": str(resolve_device(base.train.device)),
                      "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
