"""Sanity checks that catch a robustness number inflated by gradient masking.

A detector can look robust because gradient attacks fail on it (zero, shattered or random
gradients), not because it is robust. These checks (after Carlini et al., "On evaluating
adversarial robustness", 2019) look for the symptoms, each with the figures behind its verdict:

- gradients: the score's input gradient is finite and non-zero on the test images;
- deterministic: the same input gives the same score (twice, and alone vs in a batch);
- eps_growth: attacked AUROC falls as eps grows, to about 0 when eps = 1 (no constraint at all);
- more_steps / more_restarts: a stronger attack never gives a higher attacked AUROC;
- black_box: the black-box Square attack does not beat white-box PGD.

    report = run_sanity(det, x, y)
    report.passed, report.to_dict()
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from robustad.attacks.autoattack import attack_square
from robustad.attacks.base import TARGETS, as_logits
from robustad.attacks.pgd import attack_score
from robustad.config import format_eps, parse_eps
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc


@dataclass
class SanityConfig:
    eps: Any = "8/255"
    large_eps: tuple = ("64/255", 1.0)  # the last one should leave the detector no chance
    steps: int = 10
    more_steps: int = 50
    restarts: int = 3
    square_queries: int = 200
    schedule: str = "constant"
    target: str = "both"
    tolerance: float = 0.02  # AUROC noise allowed in the comparisons
    unbounded_max_auroc: float = 0.05  # "about 0" at the largest eps
    max_zero_gradient_fraction: float = 0.05
    determinism_atol: float = 1e-5  # in units of the detector's score scale
    seed: int = 0

    def validate(self) -> "SanityConfig":
        self.eps = parse_eps(self.eps, "sanity eps")
        self.large_eps = tuple(parse_eps(e, "sanity large eps") for e in self.large_eps)
        if not self.large_eps or any(e <= self.eps for e in self.large_eps) or list(self.large_eps) != sorted(self.large_eps):
            raise ConfigError(f"large_eps must grow and lie above eps = {self.eps:.4f}; got {self.large_eps}")
        if self.target not in TARGETS:
            raise ConfigError(f"sanity target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.steps < 1 or self.more_steps <= self.steps or self.restarts < 2 or self.square_queries < 1:
            raise ConfigError("sanity checks need steps >= 1, more_steps > steps, restarts >= 2, square_queries >= 1")
        return self


@dataclass
class Check:
    name: str
    passed: bool
    figures: dict[str, Any]
    explanation: str

    def line(self) -> str:
        figures = ", ".join(f"{k}={_short(v)}" for k, v in self.figures.items())
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.name}: {figures}"


@dataclass
class SanityReport:
    checks: list[Check] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks], "config": self.config,
                "seconds": round(self.seconds, 2)}

    def lines(self) -> list[str]:
        head = "all sanity checks passed" if self.passed else f"sanity checks FAILED: {', '.join(self.failed())}"
        return [head] + ["  " + c.line() for c in self.checks]


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def run_sanity(
    detector,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: SanityConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> SanityReport:
    """Run every check on a detector (score(x) differentiable, higher = more anomalous)."""
    config = (config or SanityConfig()).validate()
    log = log or (lambda message: None)
    labels = labels.long().cpu()
    images = images.cpu()
    started = time.perf_counter()
    report = SanityReport(config=asdict(config))
    scale = float(getattr(detector, "score_scale_", 1.0) or 1.0)

    report.checks.append(check_gradients(detector, images, config))
    log(report.checks[-1].line())
    report.checks.append(check_determinism(detector, images, config, scale))
    log(report.checks[-1].line())

    def pgd(eps, steps, restarts=1, seed=config.seed):
        adv = attack_score(detector, images, labels, eps, config.target, steps=steps, restarts=restarts,
                           schedule=config.schedule, seed=seed)
        with torch.no_grad():
            return auroc(detector.score(adv), labels)

    with torch.no_grad():
        clean = auroc(detector.score(images), labels)
    base = pgd(config.eps, config.steps)
    log(f"  clean AUROC {clean:.4f}; PGD-{config.steps} at eps {config.eps:.4f}: {base:.4f}")

    # AUROC should fall with eps, to about 0 without a constraint
    curve = {round(config.eps * 255, 3): base}
    previous, monotone = base, True
    for eps in config.large_eps:
        value = pgd(eps, config.steps)
        curve[round(eps * 255, 3)] = value
        monotone &= value <= previous + config.tolerance
        previous = value
    report.checks.append(Check(
        "eps_growth", bool(monotone and previous <= config.unbounded_max_auroc),
        {"clean_auroc": clean, "auroc_by_eps_x255": curve, "max_allowed_at_largest_eps": config.unbounded_max_auroc},
        f"PGD-{config.steps}: AUROC must not rise with eps (tolerance {config.tolerance}) and must reach "
        f"<= {config.unbounded_max_auroc} at eps = {format_eps(config.large_eps[-1])}; if an unbounded attack "
        "cannot break the detector, its gradients do not lead anywhere",
    ))
    log(report.checks[-1].line())

    more = pgd(config.eps, config.more_steps)
    report.checks.append(Check(
        "more_steps", bool(more <= base + config.tolerance),
        {f"pgd_{config.steps}": base, f"pgd_{config.more_steps}": more, "tolerance": config.tolerance},
        "more PGD steps must not give a higher attacked AUROC",
    ))
    log(report.checks[-1].line())

    restarted = pgd(config.eps, config.steps, restarts=config.restarts, seed=config.seed + 1)
    report.checks.append(Check(
        "more_restarts", bool(restarted <= base + config.tolerance),
        {f"pgd_{config.steps}x1": base, f"pgd_{config.steps}x{config.restarts}": restarted,
         "tolerance": config.tolerance},
        "more random restarts (other seeds) must not give a higher attacked AUROC",
    ))
    log(report.checks[-1].line())

    square_adv = attack_square(as_logits(detector), images, labels, config.eps, config.target,
                               queries=config.square_queries, seed=config.seed)
    with torch.no_grad():
        square = auroc(detector.score(square_adv), labels)
    white = min(base, more, restarted)
    report.checks.append(Check(
        "black_box", bool(square >= white - config.tolerance),
        {f"square_{config.square_queries}": square, "best_white_box": white, "tolerance": config.tolerance},
        "a black-box attack that sees only scores must not beat white-box PGD; if it does, the gradients are masked",
    ))
    log(report.checks[-1].line())
    report.seconds = time.perf_counter() - started
    return report


def check_gradients(detector, images: torch.Tensor, config: SanityConfig, batch_size: int = 256) -> Check:
    """Input gradients of the score: all finite, and non-zero for (almost) every image."""
    nonfinite, zero, norms = 0, 0, []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            scores = detector.score(x)
            grad = torch.autograd.grad(scores.sum(), x, allow_unused=True)[0] if scores.requires_grad else None
        if grad is None:
            grad = torch.zeros_like(x)
        flat = grad.flatten(1)
        finite = torch.isfinite(flat).all(dim=1)
        nonfinite += int((~finite).sum())
        zero += int(((flat == 0).all(dim=1) & finite).sum())
        norms.append(flat.abs().sum(dim=1)[finite])
    n = images.shape[0]
    norms = torch.cat(norms) if norms else torch.zeros(0)
    zero_fraction = zero / n
    return Check(
        "gradients", nonfinite == 0 and zero_fraction <= config.max_zero_gradient_fraction,
        {"images": n, "nonfinite": nonfinite, "zero_gradient_fraction": zero_fraction,
         "median_l1_gradient": float(norms.median()) if norms.numel() else 0.0},
        "d score / d input must be finite and non-zero; zero or NaN gradients stall gradient attacks "
        "without making the detector robust",
    )


@torch.no_grad()
def check_determinism(detector, images: torch.Tensor, config: SanityConfig, scale: float, alone: int = 8) -> Check:
    """Same input -> same score: scored twice, and a few images alone vs inside the batch."""
    first, second = detector.score(images).cpu(), detector.score(images).cpu()
    repeat_diff = float((first - second).abs().max())
    k = min(alone, images.shape[0])
    singles = torch.cat([detector.score(images[i : i + 1]).cpu() for i in range(k)])
    batch_diff = float((singles - first[:k]).abs().max())
    atol = config.determinism_atol * max(scale, 1e-12)
    # BLAS may sum in another order for another batch size: allow a looser bound there
    passed = repeat_diff <= atol and batch_diff <= 100 * atol
    return Check(
        "deterministic", passed,
        {"max_diff_repeat": repeat_diff, "max_diff_alone_vs_batch": batch_diff, "atol": atol},
        "a random score makes every attack look weaker than it is (and defeats the worst case over restarts)",
    )
