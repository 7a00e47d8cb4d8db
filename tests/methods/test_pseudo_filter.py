"""The paper's pseudo-anomaly filter: redraws of rejected candidates, the Gaussian of pretrained features,
its config checks, and COBRA trained with it (real digits)."""

from collections import Counter

import pytest
import torch

from robustad import Cobra
from robustad.errors import ConfigError
from robustad.methods.cobra.objective import CobraObjective
from robustad.methods.pseudo_filter import PseudoAnomalyFilter
from robustad.transforms.pseudo_anomaly import PseudoAnomalySet, redraw_rejected
from tests.conftest import TINY

CUTPASTE = {**TINY, "transforms.pseudo_anomalies": ["cutpaste"], "image_size": 16}


def _noise(x, generator):
    return torch.rand(x.shape, generator=generator)


def test_only_rejected_candidates_are_drawn_again_and_the_last_draw_is_kept():
    x = torch.zeros(6, 1, 4, 4)
    first = _noise(x, torch.Generator().manual_seed(0))
    calls = []

    def accept(images):
        calls.append(images.shape[0])
        return images.mean(dim=(1, 2, 3)) > 0.5

    counts = Counter()
    out = redraw_rejected(_noise, x, first, accept, 3, torch.Generator().manual_seed(1), counts)
    kept_first = first.mean(dim=(1, 2, 3)) > 0.5
    assert torch.equal(out[kept_first], first[kept_first])  # accepted at once: untouched
    assert calls[0] == 6 and all(a > b for a, b in zip(calls, calls[1:]))  # each judging sees only the rejected
    assert len(calls) <= 4  # the first draw and at most 3 redraws, each judged once
    assert counts["candidates"] == 6 and counts["rejected_first"] == int((~kept_first).sum())
    still = ~accept(out)
    assert counts["kept_rejected"] == int(still.sum())


def test_a_filter_that_rejects_everything_keeps_the_last_of_redraws_plus_one_draws():
    x = torch.zeros(3, 1, 4, 4)
    counts = Counter()
    draws = {"n": 0}

    def shift(images, generator):
        draws["n"] += 1
        return torch.full_like(images, float(draws["n"]))

    out = redraw_rejected(shift, x, shift(x, None), lambda im: torch.zeros(im.shape[0], dtype=torch.bool), 2,
                          None, counts)
    assert draws["n"] == 3 and torch.all(out == 3.0)
    assert counts == Counter(candidates=3, rejected_first=3, kept_rejected=3)


def test_expand_redraws_random_shifts_only_and_without_a_filter_is_unchanged():
    x = torch.rand(4, 1, 8, 8)
    rotations = PseudoAnomalySet(["rotation", "cutout"])
    plain = rotations.expand(x, torch.Generator().manual_seed(3))[0]
    judged = []

    def accept_all(images):
        judged.append(images.shape[0])
        return torch.ones(images.shape[0], dtype=torch.bool)

    filtered = rotations.expand(x, torch.Generator().manual_seed(3), accept_all, 4)[0]
    assert torch.equal(plain, filtered)  # nothing rejected: the same images, the same random stream
    assert judged == [4]  # only the cutout shift was judged, not the identity or the rotations


def test_the_filter_accepts_about_one_minus_the_quantile_of_the_normals_it_was_fitted_on(digits_split):
    normals = digits_split.train
    accept = PseudoAnomalyFilter(quantile=0.3).fit(normals)
    share = accept(normals).float().mean().item()
    assert 0.65 <= share <= 0.72
    # an image nothing like the digits lies far outside their Gaussian
    far = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert accept(far).all()
    assert (accept.distances(far) > accept.distances(normals).max()).all()


def test_the_filter_resizes_candidates_when_asked(digits_split):
    accept = PseudoAnomalyFilter(quantile=0.5, size=32).fit(digits_split.train[:20])
    assert accept.features(digits_split.train[:3]).shape == (3, 320)


@pytest.mark.parametrize("overrides, match", [
    ({"transforms.filter.enabled": True}, "rotations are fixed"),
    ({"transforms.filter.enabled": True, "transforms.pseudo_anomalies": ["cutpaste"],
      "transforms.filter.quantile": 1.0}, "quantile must be between 0 and 1"),
    ({"transforms.filter.enabled": True, "transforms.pseudo_anomalies": ["cutpaste"],
      "transforms.filter.redraws": 100}, "redraws must be from 0 to"),
    ({"transforms.filter.enabled": True, "transforms.pseudo_anomalies": ["cutpaste"],
      "transforms.filter.size": 4}, "size must be from 16"),
])
def test_bad_filter_settings_are_refused_before_training(overrides, match):
    with pytest.raises(ConfigError, match=match):
        Cobra.from_preset("cpu-small", overrides=overrides)


def test_cobra_trained_with_the_filter_records_what_it_rejected(digits_split):
    det = Cobra.from_preset("cpu-small", overrides={**CUTPASTE, "transforms.filter.enabled": True,
                                                    "transforms.filter.quantile": 0.9})
    det.fit(digits_split.train, progress=False)
    info = det.fit_info_["pseudo_filter"]
    steps = TINY["train.epochs"] * TINY["train.steps_per_epoch"]
    assert info["candidates"] == steps * TINY["train.batch_size"] * 2  # two views, one random shift
    assert 0.0 < info["rejected_first"] <= 1.0 and 0.0 <= info["kept_rejected"] <= info["rejected_first"]
    assert torch.isfinite(det.score(digits_split.test[:8])).all()
    assert "pseudo_filter" not in Cobra.from_preset("cpu-small", overrides=CUTPASTE).fit(
        digits_split.train, progress=False).fit_info_


def test_an_interrupted_run_with_the_filter_resumes_to_the_same_detector(digits_split, tmp_path, monkeypatch):
    overrides = {**CUTPASTE, "transforms.filter.enabled": True, "transforms.filter.quantile": 0.8}
    full = Cobra.from_preset("cpu-small", overrides=overrides).fit(digits_split.train, tmp_path / "full",
                                                                   progress=False)
    real_step, calls = CobraObjective.step, {"n": 0}

    def crash_in_the_second_epoch(self, x, generator):
        calls["n"] += 1
        if calls["n"] == TINY["train.steps_per_epoch"] + 2:
            raise KeyboardInterrupt
        return real_step(self, x, generator)

    monkeypatch.setattr(CobraObjective, "step", crash_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        Cobra.from_preset("cpu-small", overrides=overrides).fit(digits_split.train, tmp_path / "cut", progress=False)
    monkeypatch.setattr(CobraObjective, "step", real_step)
    resumed = Cobra.from_preset("cpu-small", overrides=overrides).fit(digits_split.train, tmp_path / "cut",
                                                                      progress=False)
    x = digits_split.test[:16]
    assert torch.allclose(full.score(x), resumed.score(x), atol=1e-5)
