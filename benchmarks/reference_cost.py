"""robustad's training step and score against the reference code's, at the reference configuration,
in this CPU's own units (issue 20: the step and score targets).

    PYTHONPATH=src .venv/bin/python benchmarks/reference_cost.py [--threads 2] [--part step,score]

The reference configuration: ResNet-18 width 64, 32 px RGB, K = 4 rotations, batch 32, eps 4/255, SGD.

- Conv rate: a plain fp32 forward and backward pass of that network over 128 images, its FLOP
  counted by torch's FlopCounterMode, divided by the CPU-seconds it took (process time, all threads).
- Training step: the reference code's 16.36 TFLOP (PGD-10) and 4.98 TFLOP (PGD-2) per step divided by
  the conv rate give its step in CPU-seconds on this machine. That is a lower bound on the real
  reference code (all of its arithmetic at the plain conv rate, no overhead), so the ratios below
  favour the reference. Each robustad setting runs one warm-up step and then --steps timed steps of
  the training loop's own step on random images, with its own FLOP counted on the warm-up.
- Score: the reference code scores an image with 10 seeded augmented samples of each of the K
  shifts, 40 forward passes (its `ood_samples` default). Measured here two ways: robustad's score at
  views 10 over all shifts (the same 40 passes, timed), and 40 forward passes' FLOP at the conv rate.
  Each robustad setting VIEWS:SHIFTS is timed in CPU-ms per image at batch 256 on a bank of 6,000
  training images (one Fashion-MNIST class) three ways: the network as trained, with its BatchNorms
  folded into the convolutions, and folded in the channels-last layout (what the score runs); the
  reference's passes are timed as trained.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import torch
from torch.utils.flop_counter import FlopCounterMode

from robustad.methods.cobra.config import CobraConfig
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.cobra.score import ShiftScore
from robustad.methods.training import make_optimizer, training_step
from robustad.models.heads import ShiftContrastiveNet
from robustad.transforms import LightViews, PseudoAnomalySet, ViewConfig

REFERENCE_STEP_TFLOP = {"PGD-10": 16.36, "PGD-2": 4.98}  # issue 20's count of the reference code's step
REFERENCE_SCORE_PASSES = 40  # 10 samples x K = 4 shifts
CHANNELS, SIZE, WIDTH, BATCH = 3, 32, 64, 32
STEP_SETTINGS = {  # label -> adversarial overrides
    "reference mode, PGD-10 (the reference code's adversaries)": {"adversarial.mode": "reference", "adversarial.steps": 10},
    "paper mode, PGD-10 (paper-lowres preset)": {"adversarial.mode": "paper", "adversarial.steps": 10},
    "paper mode, PGD-5 (cpu presets)": {"adversarial.mode": "paper", "adversarial.steps": 5},
    "joint, FGSM-RS (adversarial.mode=joint, steps=1)": {"adversarial.mode": "joint", "adversarial.steps": 1},
    "no adversarial training": {"adversarial.enabled": False},
}
SCORE_SETTINGS = ("10:all", "4:all", "0:all", "0:identity+rotate180", "0:identity")


class _Global:
    """FlopCounterMode's per-module tracker breaks torch.autograd.grad on leaf inputs (PGD), and
    only the total is wanted, so every count goes to "Global"."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def flop_counter() -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _Global()
    return counter


def network(num_shifts: int = 4) -> ShiftContrastiveNet:
    torch.manual_seed(0)
    return ShiftContrastiveNet(CHANNELS, num_shifts, WIDTH, "cifar")


def conv_rate() -> float:
    """FLOP per CPU-second of a plain fp32 forward + backward pass (the best of three)."""
    net, x = network(), torch.rand(128, CHANNELS, SIZE, SIZE)

    def once():
        out = net(x)
        (out.projection.sum() + out.shift_logits.sum()).backward()

    once()
    with flop_counter() as counter:
        once()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        once()
        best = min(best, time.process_time() - started)
    return counter.get_total_flops() / best


def step_cost(overrides: dict, steps: int) -> dict:
    config = CobraConfig.from_preset("paper-lowres").with_overrides(
        {"train.batch_size": BATCH, "adversarial.eps": "4/255", **overrides})
    pseudo = PseudoAnomalySet(config.transforms.pseudo_anomalies)
    net = network(pseudo.num_shifts)
    objective = CobraObjective(net, pseudo, LightViews(ViewConfig()), config.loss, config.adversarial)
    optimizer = make_optimizer(net, config.train)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, CHANNELS, SIZE, SIZE)
    with flop_counter() as counter:
        training_step(objective, optimizer, x, generator)
    started = time.process_time()
    for _ in range(steps):
        training_step(objective, optimizer, x, generator)
    return {"cpu_seconds": (time.process_time() - started) / steps, "tflop": counter.get_total_flops() / 1e12}


def score_cost(setting: str, bank_size: int, images: torch.Tensor, fold: str = "channels-last") -> dict:
    views, shifts = setting.split(":")
    pseudo = PseudoAnomalySet(["rotation"])
    ids = None if shifts == "all" else [pseudo.shift_names.index(s) for s in shifts.split("+")]
    scorer = ShiftScore(network(), pseudo, LightViews(ViewConfig()), int(views), 1234, shift_ids=ids).eval()
    if fold == "as trained":  # BatchNorm and all (the reference code's way; robustad before folding)
        scorer.network = lambda: scorer.net
    elif fold == "folded":  # BatchNorm folded, default layout (robustad at edd094c)
        contiguous = scorer.net.folded()
        contiguous.encoder = contiguous.encoder.to(memory_format=torch.contiguous_format)
        contiguous.encoder.memory_format = torch.contiguous_format
        scorer.network = lambda: contiguous
    elif fold != "channels-last":  # what the score runs today: folded and channels-last
        raise ValueError(fold)
    # a random unit bank of the right size: the score's cost does not depend on what the bank holds,
    # and building a real one at 40 passes per image would take longer than the measurement
    bank = torch.randn(len(scorer.shift_ids), bank_size, scorer.bank.shape[2], generator=torch.Generator().manual_seed(1))
    scorer.bank = torch.nn.functional.normalize(bank, dim=2)
    scorer.similarity_weight = torch.ones(len(scorer.shift_ids))
    scorer.shift_weight = torch.ones(len(scorer.shift_ids))
    with torch.no_grad():
        scorer(images[:8])  # warm-up
        with flop_counter() as counter:
            scorer(images[:1])
        started = time.process_time()
        scorer(images)
    return {"cpu_ms_per_image": 1000 * (time.process_time() - started) / images.shape[0],
            "gflop_per_image": counter.get_total_flops() / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per setting")
    parser.add_argument("--part", default="step,score")
    parser.add_argument("--bank", type=int, default=6000, help="training images in the score's bank")
    parser.add_argument("--settings", default=",".join(SCORE_SETTINGS),
                        help="score settings VIEWS:SHIFTS to time (the reference's 10:all is always timed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.part.split(",")
    rate = conv_rate()
    print(json.dumps({"conv_gflop_per_cpu_second": round(rate / 1e9, 2), "threads": args.threads,
                      "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                      "date": date.today().isoformat()}), flush=True)
    if "step" in parts:
        reference = {name: tflop * 1e12 / rate for name, tflop in REFERENCE_STEP_TFLOP.items()}
        print(json.dumps({"reference step, cpu_seconds": {k: round(v, 1) for k, v in reference.items()}}), flush=True)
        for label, overrides in STEP_SETTINGS.items():
            cost = step_cost(overrides, args.steps)
            print(json.dumps({"step": label, "cpu_seconds": round(cost["cpu_seconds"], 1), "tflop": round(cost["tflop"], 2),
                              **{f"x reference {k}": round(cost["cpu_seconds"] / v, 3) for k, v in reference.items()}}),
                  flush=True)
    if "score" in parts:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(256, CHANNELS, SIZE, SIZE, generator=generator)
        # the reference's 40 passes are timed unfolded, as its code runs them; robustad's settings three ways
        reference = score_cost("10:all", args.bank, images, fold="as trained")
        per_pass_flop = score_cost("0:identity", args.bank, images, fold="as trained")["gflop_per_image"] * 1e9
        by_flop = 1000 * REFERENCE_SCORE_PASSES * per_pass_flop / rate
        for setting in args.settings.split(","):
            for fold in ("as trained", "folded", "channels-last"):
                cost = score_cost(setting, args.bank, images, fold=fold)
                print(json.dumps({"score": setting, "network": fold,
                                  "cpu_ms_per_image": round(cost["cpu_ms_per_image"], 2),
                                  "gflop_per_image": round(cost["gflop_per_image"], 2),
                                  "x reference (10:all timed)": round(cost["cpu_ms_per_image"] / reference["cpu_ms_per_image"], 4),
                                  "x reference (40 passes at the conv rate)": round(cost["cpu_ms_per_image"] / by_flop, 4)}),
                      flush=True)


if __name__ == "__main__":
    main()
