"""The attack suite: many attacks per detector, AUROC per attack and the worst case per image.

One robustness number is only as good as the strongest attack behind it, so the suite runs
white-box PGD (with restarts and a step-size schedule), APGD, the black-box Square attack,
attacks adapted to COBRA's score and transfer attacks, and reports, AutoAttack-style, the
worst case per image over all of them next to each attack's own AUROC.

    result = run_suite({"cobra": det}, x, y, "cpu", surrogate=baseline)
    result.write("runs/suite")      # report.json, report.md, auroc_vs_eps.png, histograms.png
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

import torch

from robustad.attacks.attack import Transfer, load_attacks
from robustad.attacks.base import TARGETS, attack_gain, AttackConfig
from robustad.config import format_eps, parse_eps
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc
from robustad.evaluation.plots import plot_auroc_vs_eps, plot_score_histograms
from robustad.evaluation.report import suite_markdown, write_suite_report
from robustad.evaluation.robustness import check_labels, RobustnessResult
from robustad.evaluation.sanity import run_sanity

ATTACKS = load_attacks()  # every attack class in robustad.attacks, by kind
KINDS = tuple(ATTACKS)
WORST = "worst-case"
CLEAN = "clean"


@dataclass
class AttackSpec:
    """One attack of the suite. Fields that a kind does not use are ignored."""

    kind: str  # a kind of robustad.attacks.attack.ATTACKS: pgd | apgd | square | adaptive | transfer | spsa
    name: str | None = None  # label in tables; default built from the settings
    steps: int = 100  # pgd, apgd, adaptive, transfer (crafting on the surrogate)
    restarts: int = 1
    schedule: str = "constant"  # pgd/adaptive/transfer: constant (pgd runs torchattacks) | cosine | step
    step_size: Any = None
    queries: int = 1000  # square
    variants: tuple[str, ...] = ("lse:0.02", "similarity", "shift", "eot")  # adaptive
    eot_samples: int = 4
    eps: tuple | None = None  # run at these budgets instead of the suite's
    seed: int = 0

    def label(self) -> str:
        if self.name:
            return self.name
        return ATTACKS[self.kind].label_for(self) if self.kind in ATTACKS else self.kind

    def validate(self) -> "AttackSpec":
        if self.kind not in ATTACKS:
            raise ConfigError(f"unknown attack kind {self.kind!r}; available: {', '.join(ATTACKS)}")
        if self.steps < 1 or self.restarts < 1 or self.queries < 1 or self.eot_samples < 1:
            raise ConfigError(f"{self.label()}: steps, restarts, queries and eot_samples must be >= 1")
        self.step_size = AttackConfig(steps=self.steps, restarts=self.restarts, schedule=self.schedule,
                                      step_size=self.step_size).validate().step_size
        return self


@dataclass
class SuiteConfig:
    name: str = "custom"
    eps: tuple = ("8/255",)
    targets: tuple[str, ...] = ("both",)
    attacks: tuple[AttackSpec, ...] = ()
    num_test: int = 200  # the CLI's default --max-test for this suite
    batch_size: int = 256
    histogram_target: str | None = None  # default: the first target

    def validate(self) -> "SuiteConfig":
        self.eps = tuple(parse_eps(e, "suite eps") for e in self.eps)
        for t in self.targets:
            if t not in TARGETS:
                raise ConfigError(f"suite target must be one of {', '.join(TARGETS)}, got {t!r}")
        for a in self.attacks:
            a.validate()
            if a.eps is not None:
                a.eps = tuple(parse_eps(e, f"{a.label()} eps") for e in a.eps)
        labels = [a.label() for a in self.attacks]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"two attacks of the suite share a name: {labels}; give them distinct names")
        return self

    def all_eps(self) -> list[float]:
        values = set(self.eps)
        for a in self.attacks:
            values |= set(a.eps or ())
        return sorted(values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _presets() -> dict[str, SuiteConfig]:
    # cpu: sized for the demo's detector (ResNet-18 width 8, 28x28, K=4) on 200 test images: 14 min
    # measured on the 2-core CPU while another job used it (OMP_NUM_THREADS=1; one gradient pass of
    # the score over 200 images ~1.5 s, a forward pass ~0.6 s). Transfer crafting counts only when a
    # surrogate is given.
    cpu = SuiteConfig(
        name="cpu",
        eps=("8/255",),
        attacks=(
            AttackSpec("pgd", steps=100, restarts=2, schedule="cosine"),
            AttackSpec("apgd", steps=50),
            AttackSpec("square", queries=400),
            AttackSpec("adaptive", steps=25, variants=("lse:0.02", "similarity", "shift", "eot"), eot_samples=4,
                       schedule="cosine"),
            AttackSpec("transfer", steps=50, schedule="cosine"),
            # a cheap sweep for the AUROC-vs-eps curve
            AttackSpec("pgd", name="pgd-10-sweep", steps=10, schedule="cosine",
                       eps=("2/255", "4/255", "8/255", "16/255", "32/255")),
        ),
    )
    full = SuiteConfig(
        name="full",
        eps=("2/255", "4/255", "8/255", "16/255"),
        targets=("both", "normal", "anomaly"),
        num_test=1000,
        attacks=(
            AttackSpec("pgd", steps=200, restarts=5),
            AttackSpec("pgd", steps=1000, restarts=2, schedule="cosine"),
            AttackSpec("apgd", steps=100, restarts=5),
            AttackSpec("square", queries=5000),
            AttackSpec("adaptive", steps=200, restarts=2, variants=("lse:0.01", "lse:0.05", "similarity", "shift", "eot"),
                       eot_samples=16, schedule="cosine"),
            AttackSpec("transfer", steps=200, restarts=2, schedule="cosine"),
            AttackSpec("spsa", steps=100),  # gradient-free: what gradient masking would hide from the others
        ),
    )
    # seconds-long, for tests and smoke runs
    quick = SuiteConfig(
        name="quick",
        eps=("8/255",),
        num_test=60,
        attacks=(
            AttackSpec("pgd", steps=5, restarts=2),
            AttackSpec("pgd", steps=5, schedule="cosine"),
            AttackSpec("apgd", steps=5),
            AttackSpec("square", queries=20),
            AttackSpec("adaptive", steps=5, variants=("lse:0.02", "similarity", "shift", "eot"), eot_samples=2,
                       schedule="cosine"),
            AttackSpec("transfer", steps=5, schedule="cosine"),
            AttackSpec("pgd", name="pgd-3-sweep", steps=3, schedule="cosine", eps=("4/255", "16/255")),
        ),
    )
    return {"cpu": cpu, "full": full, "quick": quick}


SUITE_PRESETS = tuple(_presets())


def suite_preset(name: str) -> SuiteConfig:
    presets = _presets()  # fresh objects each time: callers may edit them
    if name not in presets:
        raise ConfigError(f"unknown suite preset {name!r}; available: {', '.join(presets)}")
    return presets[name]


# test images a sanity-check run uses when the caller names no number (the whole split takes hours)
SANITY_TEST_IMAGES = 200


def suite_for_detector(name: str, detector_eps: Any, eps: Any = None, budgets: Sequence[Any] | None = None) -> SuiteConfig:
    """The suite preset ``name`` at the budgets a detector is judged at: ``budgets`` when given;
    else ``eps``, or the detector's own test budget (8/255 at 32 px is 2/255 at 224 px), for a
    preset with one budget or when ``eps`` is given; else the preset's own budgets."""
    suite = suite_preset(name)
    if budgets is not None:
        suite.eps = tuple(budgets)
        if not suite.eps:
            raise ConfigError("name at least one budget for the suite, e.g. 2/255,8/255")
    elif eps is not None or len(suite.eps) == 1:
        suite.eps = (detector_eps if eps is None else eps,)
    return suite.validate()


# --- results --------------------------------------------------------------------------------------
@dataclass
class SuiteResult:
    config: SuiteConfig
    labels: torch.Tensor
    rows: list[dict[str, Any]] = field(default_factory=list)  # method, attack, target, eps, auroc, seconds, ...
    scores: dict[tuple, torch.Tensor] = field(default_factory=dict)  # (method, attack, target, eps) -> [N]
    clean: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> clean scores [N]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def auroc(self, method: str, attack: str, target: str | None = None, eps: float | None = None) -> float:
        for r in self.rows:
            if r["method"] == method and r["attack"] == attack and (target is None or r["target"] == target) and (
                eps is None or math.isclose(r["eps"], eps)
            ):
                return r["auroc"]
        raise KeyError((method, attack, target, eps))

    def worst_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["attack"] == WORST]

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.config.to_dict(),
            "num_test": int(self.labels.numel()),
            "num_test_anomalies": int(self.labels.sum()),
            "rows": self.rows,
            "worst_case": self.worst_rows(),
            "notes": self.notes,
            "seconds": self.seconds,
        }

    def markdown(self) -> str:
        return suite_markdown(self.to_dict())

    def write(self, out: str | Path, title: str = "attack suite", extra: dict[str, Any] | None = None) -> Path:
        """report.json, report.md, auroc_vs_eps.png and histograms.png in `out`; returns report.md."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report = {"title": title, **self.to_dict(), **(extra or {})}
        report["plots"] = {"auroc_vs_eps": plot_auroc_vs_eps(self.rows, out / "auroc_vs_eps.png").name}
        hist = self.plot_histograms(out / "histograms.png")
        if hist is not None:
            report["plots"]["histograms"] = hist.name
        return write_suite_report(out, report)

    def plot_histograms(self, path: Path) -> Path | None:
        """Clean vs worst-case scores per method, at the suite's largest main eps."""
        target = self.config.histogram_target or self.config.targets[0]
        eps = max(self.config.eps)
        panels = {}
        for method, clean in self.clean.items():
            key = (method, WORST, target, eps)
            if key not in self.scores:
                continue
            panels[method] = RobustnessResult(
                auroc_clean=auroc(clean, self.labels), auroc_attack=self.auroc(method, WORST, target, eps),
                attack={}, scores_clean=clean, scores_attack=self.scores[key], labels=self.labels,
                seconds_clean=0.0, seconds_attack=0.0,
            )
        if not panels:
            return None
        count = max(r.get("num_attacks", 0) for r in self.worst_rows() if r["target"] == target and r["eps"] == eps)
        title = f"clean vs worst case over {count} attacks, eps={format_eps(eps)}, target={target}"
        return plot_score_histograms(panels, path, title=title)


# --- running ---------------------------------------------------------------------------------------
def run_suite(
    detectors: dict[str, Any],
    images: torch.Tensor,
    labels: torch.Tensor,
    suite_config: SuiteConfig | str = "cpu",
    surrogate=None,
    log: Callable[[str], None] | None = None,
) -> SuiteResult:
    """Attack every detector with every attack of the suite; AUROC per attack and worst case per image.

    surrogate: a detector, or {name: detector}, to craft transfer attacks on. Detectors of
    `detectors` also serve as transfer sources for each other (their worst-case images, no extra
    cost). With neither, transfer rows are left out with a note.
    """
    config = suite_preset(suite_config) if isinstance(suite_config, str) else suite_config
    config.validate()
    log = log or (lambda message: None)
    labels = check_labels(images, labels)
    images = images.cpu()
    started = time.perf_counter()
    result = SuiteResult(config=config, labels=labels)
    surrogates = _as_named(surrogate)

    with torch.no_grad():
        for method, det in detectors.items():
            t = time.perf_counter()
            result.clean[method] = det.score(images).cpu()
            _add_row(result, method, CLEAN, "none", 0.0, result.clean[method], time.perf_counter() - t)
            log(f"{method}: clean AUROC {100 * result.rows[-1]['auroc']:.1f}%")

    transfer_specs = [a for a in config.attacks if a.kind == "transfer"]
    for eps in config.all_eps():
        for target in config.targets:
            specs = [a for a in config.attacks if a.kind != "transfer" and eps in (a.eps or config.eps)]
            worsts: dict[str, _Worst] = {}
            for method, det in detectors.items():
                worst = worsts[method] = _Worst(images, labels, result.clean[method])
                for spec in specs:
                    t = time.perf_counter()
                    outputs, extra = _run_attack(spec, det, images, labels, eps, target, config.batch_size)
                    seconds = time.perf_counter() - t
                    if spec.kind == "adaptive" and not outputs:
                        _note_adaptive_skipped(result, method, spec, extra.get("skipped", {}))
                    for name, x_adv in outputs.items():
                        scores = _scores(det, x_adv)
                        worst.add(name, x_adv, scores)
                        main = name == spec.label()
                        _add_row(result, method, name, target, eps, scores, seconds if main else None,
                                 **(extra if main else {}))
                        log(f"{method}: {name} eps {format_eps(eps)} target {target}: "
                            f"AUROC {100 * result.rows[-1]['auroc']:.1f}%" + (f" ({seconds:.0f} s)" if main else ""))
            for spec in transfer_specs:
                if eps in (spec.eps or config.eps):
                    _run_transfers(result, spec, detectors, surrogates, worsts, images, labels, eps, target,
                                   config.batch_size, log)
            for method, worst in worsts.items():
                _add_row(result, method, WORST, target, eps, worst.scores, worst.seconds(result, method, target, eps),
                         winners=worst.winners(), num_attacks=len(worst.names))
                log(f"{method}: worst case eps {format_eps(eps)} target {target}: "
                    f"AUROC {100 * result.rows[-1]['auroc']:.1f}%")
    if transfer_specs and not surrogates and len(detectors) < 2:
        result.notes.append("transfer attacks skipped: no surrogate detector given and only one detector in the suite")
    result.seconds = time.perf_counter() - started
    return result


def _as_named(surrogate) -> dict[str, Any]:
    if surrogate is None:
        return {}
    if isinstance(surrogate, dict):
        return dict(surrogate)
    return {"surrogate": surrogate}


@torch.no_grad()
def _scores(det, x: torch.Tensor) -> torch.Tensor:
    return det.score(x).cpu()


def _add_row(result: SuiteResult, method, attack, target, eps, scores, seconds, **extra) -> None:
    result.scores[(method, attack, target, eps)] = scores
    result.rows.append({
        "method": method, "attack": attack, "target": target, "eps": float(eps), "eps_255": round(float(eps) * 255, 3),
        "auroc": auroc(scores, result.labels), "seconds": None if seconds is None else round(seconds, 2), **extra,
    })


class _Worst:
    """Worst case per image over attacks, judged on the detector's real score."""

    def __init__(self, images, labels, clean_scores):
        self.labels = labels
        self.images = images.clone()
        self.scores = clean_scores.clone()
        self.gain = attack_gain(clean_scores, labels)
        self.source = ["clean"] * labels.numel()
        self.names: list[str] = []

    def add(self, name: str, x_adv: torch.Tensor, scores: torch.Tensor) -> None:
        self.names.append(name)
        gain = attack_gain(scores, self.labels)
        better = gain > self.gain
        self.images[better] = x_adv[better].to(self.images.dtype)
        self.scores[better] = scores[better]
        self.gain[better] = gain[better]
        for i in better.nonzero().flatten().tolist():
            self.source[i] = name

    def winners(self) -> dict[str, int]:
        """How many images each attack was the worst case for ("clean": none moved them)."""
        counts: dict[str, int] = {}
        for s in self.source:
            counts[s] = counts.get(s, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def seconds(self, result: SuiteResult, method, target, eps) -> float:
        return round(sum(r["seconds"] or 0.0 for r in result.rows if r["method"] == method and r["target"] == target
                         and math.isclose(r["eps"], eps) and r["attack"] in self.names), 2)


def _run_attack(spec: AttackSpec, det, images, labels, eps, target, batch_size) -> tuple[dict[str, torch.Tensor], dict]:
    """{row name: perturbed images}, extra fields for the main row."""
    label = spec.label()
    if spec.kind == "transfer":
        raise ConfigError(f"attack kind {spec.kind!r} is not run per detector")
    attack = ATTACKS[spec.kind].from_settings(det, spec, eps=eps, target=target, batch_size=batch_size)
    x_adv = attack(images, labels)
    if spec.kind == "adaptive":
        res = attack.result_
        outputs = {f"{label}:{name}": x for name, x in res.variants.items()}
        if not outputs:
            return {}, {"skipped": res.skipped}  # run_suite turns this into a note; no rows
        outputs[label] = x_adv
        return outputs, {"skipped": res.skipped} if res.skipped else {}
    return {label: x_adv}, {}


def _note_adaptive_skipped(result: SuiteResult, method: str, spec: AttackSpec, skipped: dict[str, str]) -> None:
    """A note (once per detector and attack) that no variant of an adaptive attack ran, and why."""
    reasons = list(dict.fromkeys(skipped.values()))
    if not reasons:
        why = "no adaptive variant was given"
    elif len(reasons) == 1:
        why = reasons[0]
    else:
        why = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
    label = spec.label()
    note = f"{label} attack skipped for {method}: {why}" if label == "adaptive" else (
        f"adaptive attack {label} skipped for {method}: {why}")
    if note not in result.notes:
        result.notes.append(note)


def _run_transfers(result, spec, detectors, surrogates, worsts, images, labels, eps, target, batch_size, log):
    crafted: dict[str, tuple[Any, torch.Tensor, float]] = {}  # name -> (source detector, images, seconds)
    for source, sdet in surrogates.items():
        t = time.perf_counter()
        x_adv = Transfer.from_settings(None, spec, surrogate=sdet, eps=eps, target=target, batch_size=batch_size)(
            images, labels)
        crafted[source] = (sdet, x_adv, time.perf_counter() - t)
    # the other detectors' worst cases serve as sources too; snapshot them before transfers change them
    for other, worst in worsts.items():
        crafted.setdefault(other, (detectors[other], worst.images.clone(), 0.0))
    for method, det in detectors.items():
        for source, (sdet, x_adv, craft_seconds) in crafted.items():
            if sdet is det:
                continue
            t = time.perf_counter()
            scores = _scores(det, x_adv)
            name = f"{spec.label()}:{source}"
            worsts[method].add(name, x_adv, scores)
            _add_row(result, method, name, target, eps, scores, craft_seconds + time.perf_counter() - t)
            log(f"{method}: {name} eps {format_eps(eps)} target {target}: AUROC {100 * result.rows[-1]['auroc']:.1f}%")


def evaluate_suite(
    detectors: dict[str, Any],
    images: torch.Tensor,
    labels: torch.Tensor,
    out: str | Path,
    suite: SuiteConfig | str | None = "cpu",
    sanity: bool = False,
    sanity_config=None,
    surrogate=None,
    title: str = "attack suite",
    extra: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run the suite and/or the sanity checks and write report.json, report.md and the plots into out.

    Returns the path of report.md and {method: SanityReport} (empty without sanity).
    """
    out = Path(out)
    log = log or (lambda message: None)
    report: dict[str, Any] = {"title": title, **(extra or {})}
    sanity_reports: dict[str, Any] = {}
    if sanity:
        for name, det in detectors.items():
            log(f"sanity checks for {name}")
            sanity_reports[name] = run_sanity(det, images, labels, sanity_config, log=log)
        report["sanity"] = {k: v.to_dict() for k, v in sanity_reports.items()}
    if suite is not None:
        result = run_suite(detectors, images, labels, suite, surrogate=surrogate, log=log)
        return result.write(out, title=title, extra={k: v for k, v in report.items() if k != "title"}), sanity_reports
    return write_suite_report(out, report), sanity_reports
