"""Attacks adapted to a detector's score: COBRA's ShiftScore and the kNN (PatchCore-style) score.

COBRA (robustad.methods.cobra.score.ShiftScore). The score is
-mean_k [ w_k * max_m <z_k(x), b_km>  +  v_k * logit_k(x) ]  over shifts k, with a feature bank
b, per-shift weights w (similarity) and v (shift head). Plain PGD on it can be weak for reasons
that have nothing to do with robustness:

- the max over the bank passes gradient to one bank entry only, and that entry can change
  from step to step;  -> "lse:T": replace it by T * logsumexp(. / T) while attacking;
- the two terms can pull against each other;  -> "similarity" / "shift": attack one term alone;
- with random views or random pseudo-anomalies (score.views > 0, CutPaste, ...) the score's
  fixed seed is one draw of many;  -> "eot": average over fresh draws (expectation over
  transformation). With views = 0 and rotations, as in the cpu-small preset, no draw is random
  and this variant is skipped (it would equal plain PGD).

kNN (robustad.methods.knn.detector.KNNScore). The score is  max_p min_j ||f_p(x) - b_j||  over the
patches p of the image and the bank entries j (image mode: one "patch"; k > 1: the mean over the
k nearest instead of the min). Both the hard max and the hard min pass the gradient through a
single patch and a single neighbour, so PGD follows one patch towards one bank entry while the
others may be just as close to winning.  -> "knn-soft:T" (or "knn-soft:T:K"): while attacking,
the max over patches becomes a log-sum-exp and the min over the bank a soft-min over the K
(default 16) nearest bank entries, found without gradient at every step, with exact distances
(and gradients) to them. T is relative: the temperature of an image is T times its current real
score, so knn-soft:0.05 means patches and neighbours within a few percent of the extremes share
the gradient, whatever the scale of the feature space. For a kNN detector the plain-score PGD
("score", the same run as robustad.attacks.pgd.attack_score) always runs too, so the result is
never better for the defender than plain PGD with the same settings.

"score" (plain PGD on the real score) is a variant for both families. The suite's default
variant names are COBRA's; for a kNN detector they are mapped (see attack_adaptive). Whatever the
attack optimises, each candidate is judged on the real score, and the result keeps the worst case
per image over all variants.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from robustad.attacks.base import attack_gain, detector_device, keep_worst
from robustad.attacks.pgd import attack_score, perturb_targets, pgd_maximize
from robustad.errors import ConfigError

VARIANTS = ("lse", "similarity", "shift", "eot", "knn-soft", "score", "member")
COBRA_VARIANTS = ("lse", "similarity", "shift", "eot")
KNN_VARIANTS = ("knn-soft",)
# what the COBRA names become for a kNN detector: two temperatures of the smooth score
KNN_DEFAULT_VARIANTS = ("knn-soft:0.01", "knn-soft:0.05")
KNN_NEIGHBOURS = 16  # bank entries in the soft-min, unless the variant names another number
PLAIN = "score"


def cobra_surrogate(scorer, x: torch.Tensor, bank_temperature: float | None = None, terms: str = "both") -> torch.Tensor:
    """ShiftScore.forward rebuilt from its parts, with a smooth bank maximum and a choice of terms.

    bank_temperature=None and terms="both" give exactly scorer(x) (a test checks this).
    The temperature is in units of the weighted similarity, which is about a cosine (w_k is
    1 / the mean feature norm of the training images), so 0.01-0.1 is a useful range.
    """
    if terms not in ("both", "similarity", "shift"):
        raise ConfigError(f"terms must be both, similarity or shift, got {terms!r}")
    z, logit = scorer.shifted_features(x)
    normality = 0.0
    if terms in ("both", "similarity"):
        sims = torch.bmm(z, scorer.bank.transpose(1, 2))  # [K, N, M]
        if bank_temperature is None:
            best = sims.amax(dim=2) * scorer.similarity_weight[:, None]
        else:
            weighted = sims * scorer.similarity_weight[:, None, None]
            # minus T*log(M): keeps the smooth max close to the real one in value (not needed for gradients)
            best = bank_temperature * (torch.logsumexp(weighted / bank_temperature, dim=2) - math.log(sims.shape[2]))
        normality = normality + best
    if terms in ("both", "shift"):
        normality = normality + logit * scorer.shift_weight[:, None]
    return -normality.mean(dim=0)


def knn_surrogate(scorer, x: torch.Tensor, temperature: float | None = None,
                  neighbours: int = KNN_NEIGHBOURS) -> torch.Tensor:
    """KNNScore.forward with a smooth max over patches and a soft-min over the nearest bank entries."""
    return knn_surrogate_from_features(scorer, scorer.features(x), temperature, neighbours)


def knn_surrogate_from_features(scorer, feats: torch.Tensor, temperature: float | None = None,
                                neighbours: int = KNN_NEIGHBOURS) -> torch.Tensor:
    """The kNN score [N] of patch features [N, P, D], hard (temperature None) or smooth.

    temperature=None gives exactly scorer(x) for feats = scorer.features(x) (a test checks this).
    Otherwise, per image, t = temperature * (its real score, without gradient), and

        score ~ t * (logsumexp_p(d_p / t) - log P),   d_p = -t * (logsumexp_j(-||f_p - b_j|| / t) - log K)

    over the K = `neighbours` nearest bank entries j of each patch (searched without gradient,
    distances to them exact, with gradient). As t -> 0 this tends to the real score (the
    -log P, -log K terms keep it close in value; they do not change gradients). With k > 1
    nearest entries averaged (KNNConfig.k), the per-patch mean over the k nearest is kept as it
    is (it already spreads the gradient over k entries) and only the max over patches is smoothed.
    """
    bank = scorer.bank
    n, p, d = feats.shape
    q = feats.reshape(n * p, d)
    k = min(scorer.k, bank.shape[0])
    if temperature is None:
        idx = scorer.nearest(q.detach(), k)
        return _bank_distances(scorer, q, idx).mean(dim=1).view(n, p).amax(dim=1)
    if temperature <= 0:
        raise ConfigError(f"knn-soft temperature must be > 0, got {temperature}")
    kk = min(max(int(neighbours), k), bank.shape[0])
    idx = scorer.nearest(q.detach(), kk)  # [Q, kk], nearest first
    dist = _bank_distances(scorer, q, idx)  # exact, with gradient to q
    with torch.no_grad():
        real = dist[:, :k].mean(dim=1).view(n, p).amax(dim=1)
        t = (temperature * real).clamp_min(1e-12)  # [N]
    if k == 1:
        tq = t.repeat_interleave(p)[:, None]  # [Q, 1]: each patch uses its image's temperature
        patch = -tq[:, 0] * (torch.logsumexp(-dist / tq, dim=1) - math.log(kk))
    else:
        patch = dist[:, :k].mean(dim=1)
    patch = patch.view(n, p)
    return t * (torch.logsumexp(patch / t[:, None], dim=1) - math.log(p))


def _bank_distances(scorer, q: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # the scorer's own distance (density-normalised where it is) when it has one
    if hasattr(scorer, "distances_to"):
        return scorer.distances_to(q, idx)
    return (q.unsqueeze(1) - scorer.bank[idx]).norm(dim=2)


@contextmanager
def reseeded(scorer, seed: int):
    """Temporarily draw the score's views and pseudo-anomalies from another seed."""
    old = scorer.seed
    scorer.seed = seed
    try:
        yield scorer
    finally:
        scorer.seed = old


@torch.no_grad()
def score_depends_on_seed(detector, images: torch.Tensor, probes: int = 2) -> bool:
    """Does the score change when its views/pseudo-anomalies are drawn from other seeds?"""
    scorer = detector.scorer
    x = detector.prepare(images[:8])
    reference = scorer(x)
    for i in range(probes):
        with reseeded(scorer, scorer.seed + 1_000_003 * (i + 1)):
            if not torch.allclose(scorer(x), reference, rtol=1e-5, atol=1e-6):
                return True
    return False


def is_shift_score_detector(detector) -> bool:
    scorer = getattr(detector, "scorer", None)
    return all(hasattr(scorer, a) for a in ("shifted_features", "bank", "similarity_weight", "shift_weight", "seed"))


def is_knn_score_detector(detector) -> bool:
    """A detector whose scorer is a KNNScore (patch features, a bank, a nearest-entry search)."""
    scorer = getattr(detector, "scorer", None)
    return isinstance(scorer, torch.nn.Module) and all(
        hasattr(scorer, a) for a in ("features", "nearest", "bank", "k", "mode"))


def is_smooth_score_detector(detector) -> bool:
    """A detector whose score is smooth by construction (scorer.smooth): plain PGD is its adaptive attack."""
    return bool(getattr(getattr(detector, "scorer", None), "smooth", False))


def is_ensemble_detector(detector) -> bool:
    """A detector whose score sums standardised member scores (robustad.methods.ensemble.detector.EnsembleScore)."""
    scorer = getattr(detector, "scorer", None)
    return isinstance(scorer, torch.nn.Module) and all(hasattr(scorer, a) for a in ("members", "member_terms",
                                                                                     "center", "scale"))


def _member_view(scorer: torch.nn.Module):
    """A stand-in detector for one member scorer, so the family checks above apply to it."""

    class _Member:
        pass

    member = _Member()
    member.scorer = scorer
    return member


def unsupported_reason(detector) -> str | None:
    """Why no adaptive variant can run on this detector; None when some can."""
    if (is_shift_score_detector(detector) or is_knn_score_detector(detector) or is_smooth_score_detector(detector)
            or is_ensemble_detector(detector)):
        return None
    return ("its score is neither COBRA's shift score nor a kNN feature-bank score, so it has no smooth "
            "stand-in to attack (plain PGD already attacks its score as it is)")


@dataclass
class AdaptiveResult:
    images: torch.Tensor  # worst case per image over the variants that ran
    variants: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> perturbed images
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it did not run


def parse_variant(name: str) -> tuple[str, float | None]:
    """(kind, temperature) of a variant name: lse:T, similarity, shift, eot, knn-soft:T[:K], score."""
    kind, _, arg = name.partition(":")
    if kind not in VARIANTS:
        raise ConfigError(f"unknown adaptive variant {name!r}; use lse:T, similarity, shift, eot, knn-soft:T, member:I "
                          "or score")
    if kind == "member":
        if not arg.isdigit():
            raise ConfigError(f"member needs the index of an ensemble member, e.g. member:0; got {name!r}")
        return kind, float(arg)
    if kind in ("lse", "knn-soft"):
        temp, _, neighbours = arg.partition(":") if kind == "knn-soft" else (arg, "", "")
        try:
            t = float(temp)
        except ValueError:
            raise ConfigError(f"{kind} needs a temperature, e.g. {kind}:0.05; got {name!r}") from None
        if not t > 0 or not math.isfinite(t):
            raise ConfigError(f"{kind} temperature must be > 0, got {t}")
        if neighbours:
            _parse_neighbours(name)
        return kind, t
    if arg:
        raise ConfigError(f"adaptive variant {kind!r} takes no argument, got {name!r}")
    return kind, None


def _parse_neighbours(name: str, default: int = KNN_NEIGHBOURS) -> int:
    parts = name.split(":")
    if len(parts) < 3:
        return default
    try:
        k = int(parts[2])
    except ValueError:
        raise ConfigError(f"knn-soft:T:K needs a whole number of neighbours K, got {name!r}") from None
    if k < 1 or len(parts) > 3:
        raise ConfigError(f"knn-soft:T:K needs K >= 1 and nothing after it, got {name!r}")
    return k


def _plan(detector, variants: tuple[str, ...], knn_variants: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """The variant names that run on this detector, and {name: why not} for the others."""
    for v in variants:
        parse_variant(v)  # a misspelt name fails for every detector
    skipped: dict[str, str] = {}
    if is_ensemble_detector(detector):
        # the whole sum (score), each member's term alone, and the sum with each member smoothed
        members = [_member_view(m) for m in detector.scorer.members]
        has_shift = any(is_shift_score_detector(m) for m in members)
        runs = [PLAIN] + [f"member:{i}" for i in range(len(members))]
        for v in variants:
            kind = parse_variant(v)[0]
            if kind in ("lse", "knn-soft") or (kind in ("similarity", "shift") and has_shift):
                if v not in runs:
                    runs.append(v)
            elif kind in ("similarity", "shift"):
                skipped[v] = "no member has COBRA's shift score"
            elif kind == "eot":
                skipped[v] = ("expectation over the members' random views is not run on ensembles; their "
                              "members in robustad's presets draw nothing at random at 32 px and below (rotations)")
            elif v not in runs:
                runs.append(v)
        return runs, skipped
    if is_smooth_score_detector(detector):  # no max, min or randomness to smooth away
        for v in variants:
            skipped[v] = "the score is smooth by construction: plain PGD on it (score) is the adaptive attack"
        return [PLAIN], skipped
    if is_shift_score_detector(detector):
        runs = []
        for v in variants:
            if parse_variant(v)[0] in KNN_VARIANTS:
                skipped[v] = "a kNN-score variant; this detector has COBRA's shift score"
            elif v not in runs:
                runs.append(v)
        return runs, skipped
    # kNN: plain-score PGD first, then the smooth variants, each name once
    runs = [PLAIN]
    for v in variants:
        kind = parse_variant(v)[0]
        if kind == "lse":
            for w in knn_variants:
                if w not in runs:
                    runs.append(w)
            skipped[v] = f"a COBRA variant; for a kNN score it becomes {', '.join(knn_variants)}"
        elif kind == "similarity":
            skipped[v] = "a COBRA variant; the kNN score has a single term, so attacking it alone is plain PGD (score)"
        elif kind == "shift":
            skipped[v] = "a COBRA variant; the kNN score has no shift head"
        elif kind == "eot":
            skipped[v] = "the kNN score draws nothing at random: EOT would equal plain PGD (score)"
        elif v not in runs:
            runs.append(v)
    return runs, skipped


def attack_adaptive(
    detector,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    target: str = "both",
    *,
    variants: tuple[str, ...] = ("lse:0.02", "similarity", "shift", "eot"),
    steps: int = 50,
    restarts: int = 1,
    schedule: str = "cosine",
    step_size: float | None = None,
    eot_samples: int = 4,
    seed: int = 0,
    batch_size: int = 256,
    knn_variants: tuple[str, ...] = KNN_DEFAULT_VARIANTS,
) -> AdaptiveResult:
    """Run each variant with PGD on its surrogate; keep per image the one worst on the real score.

    Targets ("normal", "anomaly", "both"), eps, steps, restarts, schedule, step size and seed are
    those of robustad.attacks.pgd.pgd_maximize (random start, surrogate ascent, the last iterate
    of each restart judged on the real score). Images outside the target are returned unchanged.

    COBRA detectors (ShiftScore): lse:T, similarity, shift, eot and score run as named; knn-soft
    names are skipped.

    kNN detectors (KNNScore): "score" (plain PGD on the real score, exactly attack_score with the
    same settings) always runs, so the worst case kept is never better for the defender than it;
    knn-soft:T[:K] runs as named. The COBRA names are mapped: "lse:T" (any T, whose units are
    COBRA's similarities) becomes the knn-soft variants of `knn_variants` (default knn-soft:0.01
    and knn-soft:0.05); "similarity" becomes plain "score" (the kNN score has one term); "shift"
    (no shift head) and "eot" (nothing random) are skipped. So the suite's default list
    ("lse:0.02", "similarity", "shift", "eot") runs score, knn-soft:0.01 and knn-soft:0.05.
    Mapped and skipped names are listed in result.skipped with the reason.

    Any other detector: nothing runs; result.images are the clean images and every variant is in
    result.skipped with the reason (unsupported_reason).
    """
    reason = unsupported_reason(detector)
    if reason is not None:
        for v in variants:
            parse_variant(v)
        return AdaptiveResult(images.clone(), skipped={v: reason for v in variants})
    scorer = detector.scorer
    if scorer.training:  # the score is defined with running BatchNorm statistics
        scorer.eval()
    for v in knn_variants:
        if parse_variant(v)[0] not in KNN_VARIANTS:
            raise ConfigError(f"knn_variants takes knn-soft:T[:K] names, got {v!r}")
    runs, skipped = _plan(detector, tuple(variants), tuple(knn_variants))

    def real_gain(x, y):
        return attack_gain(detector.score(x), y)

    result = AdaptiveResult(images.clone(), skipped=skipped)
    for name in runs:
        kind, temperature = parse_variant(name)
        if kind == PLAIN:
            result.variants[name] = attack_score(
                detector, images, labels, eps, target, steps=steps, restarts=restarts, schedule=schedule,
                step_size=step_size, seed=seed, batch_size=batch_size)
            continue
        if is_ensemble_detector(detector):
            gain = _ensemble_gain(detector, kind, temperature, name)
        elif kind == "shift" and not bool((scorer.shift_weight != 0).any()):
            result.skipped[name] = "the score does not use the shift head (shift weights are 0)"
            continue
        elif kind == "eot" and not score_depends_on_seed(detector, images):
            result.skipped[name] = "the score draws nothing at random (views = 0, fixed pseudo-anomalies): EOT = PGD"
            continue
        elif kind == "knn-soft":
            gain = _knn_gain(detector, temperature, _parse_neighbours(name))
        else:
            gain = _surrogate_gain(detector, kind, temperature, eot_samples, seed)
        result.variants[name] = perturb_targets(
            images, labels, target,
            lambda x, y, gain=gain: pgd_maximize(
                gain, x, y, eps, steps, restarts=restarts, schedule=schedule, step_size=step_size, seed=seed,
                judge_fn=real_gain, batch_size=batch_size, device=detector_device(detector)),
        )
    if result.variants:
        with torch.no_grad():
            best_gain = real_gain(images, labels).cpu()
            best = images.clone()
            for x_adv in result.variants.values():
                keep_worst(best, best_gain, x_adv, real_gain(x_adv, labels).cpu())
        result.images = best
    return result


def _ensemble_gain(detector, kind: str, temperature: float | None, name: str):
    """Gain on an ensemble: one member's term alone (member:I), or the sum with every member smoothed
    the way its own family is (lse:T: COBRA members with a log-sum-exp bank maximum at T, kNN members
    with knn-soft at T scaled to their relative temperatures; similarity/shift: COBRA members' terms)."""
    scorer = detector.scorer
    knn_temperature = {"lse": 0.05, "knn-soft": temperature}.get(kind)

    def member_score(i: int, x: torch.Tensor) -> torch.Tensor:
        member = scorer.members[i]
        view = _member_view(member)
        if is_shift_score_detector(view) and kind in ("lse", "similarity", "shift"):
            terms = kind if kind in ("similarity", "shift") else "both"
            return cobra_surrogate(member, x, temperature if kind == "lse" else None, terms)
        if is_knn_score_detector(view) and knn_temperature is not None:
            return knn_surrogate(member, x, knn_temperature, _parse_neighbours(name) if kind == "knn-soft" else KNN_NEIGHBOURS)
        return member(x)

    def gain(x, y):
        x = detector.prepare(x)
        if kind == "member":
            i = int(temperature)
            total = (member_score(i, x) - scorer.center[i]) / scorer.scale[i]
        else:
            total = sum((member_score(i, x) - scorer.center[i]) / scorer.scale[i] for i in range(len(scorer.members)))
        return attack_gain(total, y)

    return gain


def _knn_gain(detector, temperature: float, neighbours: int):
    scorer = detector.scorer

    def gain(x, y):
        return attack_gain(knn_surrogate(scorer, detector.prepare(x), temperature, neighbours), y)

    return gain


def _surrogate_gain(detector, kind: str, temperature: float | None, eot_samples: int, seed: int):
    scorer = detector.scorer
    if kind == "eot":
        # fresh seeds for every step and sample, never the score's own seed
        counter = itertools.count()
        base = scorer.seed + 7_777_777 + 1_000 * seed

        def gain(x, y):
            x = detector.prepare(x)
            step = next(counter)
            total = 0.0
            for j in range(eot_samples):
                with reseeded(scorer, base + step * eot_samples + j + 1):
                    total = total + scorer(x)
            return attack_gain(total / eot_samples, y)

        return gain
    terms = kind if kind in ("similarity", "shift") else "both"

    def gain(x, y):
        return attack_gain(cobra_surrogate(scorer, detector.prepare(x), temperature, terms), y)

    return gain
