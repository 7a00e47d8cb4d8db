"""How far the COBRA step's weight gradients move under faster arithmetic, against float64.

    .venv/bin/python benchmarks/gradient_precision.py --preset cpu-small --width 16
    python benchmarks/gradient_precision.py --preset fashion-mnist-paper --size 32 --device cuda   # a GPU

Variants: float32 (what training uses), bf16 autocast, and float32 in the channels-last (NHWC)
layout. Each computes one step's gradients from the same weights, images and random draws as a
float64 reference; the table gives, per variant, the median and worst relative error
||g - g64|| / ||g64|| over the parameter tensors. --warm-steps trains the network that many
float32 steps first, to see whether the picture changes once training is under way.
Adversarial training is off here: PGD's sign steps would turn any rounding difference into
another adversary, and the question is the arithmetic of one step.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform

import torch

from robustad.methods.cobra.config import CobraConfig
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.training import make_optimizer, training_step
from robustad.runtime import resolve_device
from robustad.models.heads import ShiftContrastiveNet
from robustad.transforms import LightViews, PseudoAnomalySet, ViewConfig

VARIANTS = ("float32", "bf16-autocast", "channels-last")


def step_gradients(net, config, x, variant: str, seed: int = 0) -> tuple[float, dict[str, torch.Tensor]]:
    """(loss, gradients in float64) of one COBRA step of a copy of `net` in the given arithmetic."""
    net = copy.deepcopy(net)
    dtype = torch.float64 if variant == "float64" else torch.float32
    net.to(dtype)
    x = x.to(dtype)
    if variant == "channels-last":
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    pseudo = PseudoAnomalySet(config.transforms.pseudo_anomalies)
    objective = CobraObjective(net, pseudo, LightViews(ViewConfig()), config.loss, config.adversarial)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=variant == "bf16-autocast"):
        loss, _ = objective.step(x, generator)
    loss.backward()
    return float(loss.detach()), {n: p.grad.double() for n, p in net.named_parameters()}


def relative_errors(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> list[float]:
    return sorted(float((grads[k] - g).norm() / g.norm().clamp_min(1e-30)) for k, g in reference.items())


def measure(config: CobraConfig, size: int, channels: int, warm_steps: int = 0) -> list[dict]:
    device = resolve_device(config.train.device)
    config = config.with_overrides({"adversarial.enabled": False})
    pseudo = PseudoAnomalySet(config.transforms.pseudo_anomalies)
    torch.manual_seed(0)
    net = ShiftContrastiveNet(channels, pseudo.num_shifts, config.model.width, config.model.stem).to(device)
    x = torch.rand(config.train.batch_size, channels, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    if warm_steps:
        objective = CobraObjective(net, pseudo, LightViews(ViewConfig()), config.loss, config.adversarial)
        optimizer, generator = make_optimizer(net, config.train), torch.Generator(device=device).manual_seed(2)
        for _ in range(warm_steps):
            training_step(objective, optimizer, x, generator)
    loss64, reference = step_gradients(net, config, x, "float64")
    rows = []
    for variant in VARIANTS:
        loss, grads = step_gradients(net, config, x, variant)
        errors = relative_errors(grads, reference)
        rows.append({"variant": variant, "loss": loss, "loss_float64": loss64,
                     "median_relative_error": errors[len(errors) // 2], "worst_relative_error": errors[-1]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--width", type=int, help="network width (default: the preset's)")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warm-steps", type=int, default=0, help="float32 training steps before measuring")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()
    overrides = {"train.batch_size": args.batch_size, "train.device": args.device}
    if args.width:
        overrides["model.width"] = args.width
    config = CobraConfig.from_preset(args.preset).with_overrides(overrides)
    for row in measure(config, args.size, args.channels, args.warm_steps):
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    device = resolve_device(config.train.device)
    print(json.dumps({"preset": args.preset, "width": config.model.width, "size": args.size,
                      "warm_steps": args.warm_steps, "torch": torch.__version__, "device": str(device),
                      "machine": torch.cuda.get_device_name(device) if device.type == "cuda"
                      else platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
