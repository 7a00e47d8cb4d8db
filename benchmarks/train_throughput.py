"""Training throughput of the COBRA step: normal images per second, per preset and mode.

    .venv/bin/python benchmarks/train_throughput.py --preset cpu-small --steps 5
Uses random 28x28 grayscale images (throughput does not depend on content); the first step
is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from robustad.config import CobraConfig
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.training import make_optimizer, resolve_device
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
        loss, _ = objective.step(x, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.train.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    rows = []
    base = CobraConfig.from_preset(args.preset)
    for label, overrides in [
        ("no adversarial training", {"adversarial.enabled": False}),
        ("adversarial, mode=paper", {"adversarial.mode": "paper"}),
        ("adversarial, mode=reference", {"adversarial.mode": "reference"}),
    ]:
        config = base.with_overrides(overrides)
        rows.append({"setting": label, "images_per_second": round(measure(config, args.size, args.channels, args.steps), 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"preset": args.preset, "size": args.size, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
