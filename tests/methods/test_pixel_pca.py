"""pixel-pca: the PCA reconstruction error of the pixels, on real digits."""

import pytest
import torch

from robustad import PixelPCA
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc


@pytest.fixture(scope="module")
def fitted(digits_split):
    return PixelPCA(overrides={"variance": 0.9}).fit(digits_split.train, progress=False)


def test_the_score_is_the_residual_outside_the_fewest_directions_that_keep_the_variance(fitted, digits_split):
    x = digits_split.train.flatten(1).double()
    train = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))]  # any order: PCA ignores it
    centred = train - train.mean(dim=0)
    energy = torch.linalg.svdvals(centred) ** 2
    share = energy.cumsum(0) / energy.sum()
    k = fitted.fit_info_["num_components"]
    # the training part (the hold-out excluded) keeps >= 90 % with k directions and not with k - 1
    assert fitted.fit_info_["variance_kept"] >= 0.9 and 1 <= k < x.shape[1]
    assert share[k - 1] > 0.85  # the whole set (with the hold-out) is close to the fitted part
    basis, mean = fitted.scorer.basis.double(), fitted.scorer.mean.double()
    test = digits_split.test.flatten(1).double() - mean
    expected = (test - test @ basis @ basis.T).norm(dim=1)
    assert torch.allclose(fitted.score(digits_split.test).double(), expected, atol=1e-4)
    assert torch.allclose(basis.T @ basis, torch.eye(k, dtype=torch.float64), atol=1e-5)


def test_it_is_1_lipschitz_in_l2_and_ranks_digits(fitted, digits_split):
    x = digits_split.test[:20]
    delta = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.2
    moved = (x + delta).clamp(0, 1)
    change = (fitted.score(moved) - fitted.score(x)).abs()
    assert (change <= (moved - x).flatten(1).norm(dim=1) + 1e-5).all()
    assert auroc(fitted.score(digits_split.test), digits_split.test_labels) > 0.8


def test_bad_settings_are_refused():
    for overrides, match in (({"variance": 1.0}, "variance"), ({"downsample": 0}, "downsample"),
                             ({"max_components": 0}, "max_components")):
        with pytest.raises(ConfigError, match=match):
            PixelPCA(overrides=overrides)
