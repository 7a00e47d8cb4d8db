"""The reference detectors: raw-pixel kNN and image statistics, on real digits."""

import pytest
import torch

import torch.nn.functional as F

from robustad import ImageStats, PixelKNN, PixelPatchKNN, load_detector
from robustad.errors import InputError
from robustad.attacks.pgd import attack_score
from robustad.errors import ConfigError
from robustad.evaluation.metrics import auroc

NO_HOLDOUT = {"score.holdout_fraction": 0.0}


def test_pixel_knn_is_the_distance_to_the_nearest_training_image(digits_split):
    train, x = digits_split.train, digits_split.test[:10]
    det = PixelKNN(overrides=NO_HOLDOUT).fit(train)
    brute = torch.cdist(x.flatten(1), train.flatten(1)).min(dim=1).values
    assert torch.allclose(det.score(x), brute, atol=1e-5)
    assert torch.allclose(det.score(train[:5]), torch.zeros(5), atol=1e-5)


def test_pixel_knn_options_downsample_and_k(digits_split):
    train, x = digits_split.train, digits_split.test[:6]
    pooled = torch.nn.functional.avg_pool2d
    det = PixelKNN(overrides={**NO_HOLDOUT, "downsample": 2, "k": 3, "chunk_size": 7}).fit(train)
    d = torch.cdist(pooled(x, 2).flatten(1), pooled(train, 2).flatten(1)).topk(3, largest=False).values.mean(1)
    assert torch.allclose(det.score(x), d, atol=1e-5)


def test_image_stats_scores_brightness_and_contrast(digits_split):
    det = ImageStats(overrides=NO_HOLDOUT).fit(digits_split.train)
    x = digits_split.train[:20]
    assert det.score(x).mean() < det.score((x * 0.5).clamp(0, 1)).mean()  # a dimmer image is unusual
    assert det.score(x).mean() < det.score(torch.full_like(x, 0.5)).mean()  # so is a flat one


def _brute_patch_score(x, train, p, s):
    patches = lambda t: F.unfold(t, p, stride=s).transpose(1, 2)  # noqa: E731
    bank = patches(train).reshape(-1, train.shape[1] * p * p)
    q = patches(x)
    return torch.stack([torch.cdist(qi, bank).min(dim=1).values.max() for qi in q])


def test_pixel_patch_knn_is_the_worst_patch_s_distance_to_its_nearest_training_patch(digits_split):
    train, x = digits_split.train, digits_split.test[:10]
    det = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 4, "patch_stride": 2, "bank_size": 10**6}).fit(train)
    assert torch.allclose(det.score(x), _brute_patch_score(x, train, 4, 2), atol=1e-5)
    assert torch.allclose(det.score(train[:5]), torch.zeros(5), atol=1e-5)
    maps = det.anomaly_map(x)
    assert maps.shape == (10, 1, 8, 8) and torch.isfinite(maps).all()


def test_pixel_patch_knn_reaches_the_edges_and_refuses_images_smaller_than_a_patch(digits_split):
    train = digits_split.train
    det = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 3, "patch_stride": 2, "bank_size": 10**6}).fit(train)
    x = digits_split.test[:4].clone()
    bumped = x.clone()
    bumped[..., -1, -1] = 1 - bumped[..., -1, -1]  # the bottom-right pixel: not on the stride-2 grid of 8 px
    distances = lambda t: det.scorer.patch_distances(det.scorer.features(t))  # noqa: E731
    assert distances(x).shape == (4, 16)  # 8 px, patches of 3 every 2: padded to 9 px, a 4 x 4 grid
    assert (distances(bumped)[:, -1] != distances(x)[:, -1]).all()
    small = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 8, "patch_stride": 4})
    with pytest.raises(InputError, match="smaller than patch_size 8"):
        small.fit(F.interpolate(train, size=(6, 6)))


def test_pixel_patch_knn_moves_at_most_eps_times_root_patch_size_under_attack(digits_split):
    train, x = digits_split.train, digits_split.test[:20]
    det = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 4, "patch_stride": 2}).fit(train)
    eps = 8 / 255
    adv = attack_score(det, x, digits_split.test_labels[:20], eps, steps=20)
    moved = (det.score(adv) - det.score(x)).abs()
    assert moved.max() > 0.5 * eps  # the attack does move it
    assert moved.max() <= eps * 4 + 1e-5  # ... within the Lipschitz bound: eps * sqrt(1 * 4 * 4)


@pytest.mark.parametrize("cls", [PixelKNN, PixelPatchKNN, ImageStats])
def test_references_detect_save_load_and_fall_under_attack(cls, digits_split, tmp_path):
    split = digits_split
    det = cls.from_preset("cpu-small").fit(split.train)
    clean = auroc(det.score(split.test), split.test_labels)
    assert clean > 0.6
    assert det.threshold_ == det.threshold_  # calibrated on held-out normals
    det.save(tmp_path / "d")
    loaded = load_detector(tmp_path / "d")
    assert type(loaded) is cls and torch.allclose(loaded.score(split.test), det.score(split.test))
    adv = attack_score(det, split.test, split.test_labels, 0.3, steps=20)
    assert auroc(det.score(adv), split.test_labels) < clean - 0.1  # the scores are differentiable and attackable


def test_reference_settings_are_checked():
    with pytest.raises(ConfigError, match="downsample"):
        PixelKNN(overrides={"downsample": 0})
    with pytest.raises(ConfigError, match="unknown config key"):
        PixelKNN(overrides={"train.epochs": 2})
    with pytest.raises(ConfigError, match="patch_stride"):
        PixelPatchKNN(overrides={"patch_size": 4, "patch_stride": 5})
    with pytest.raises(ConfigError, match="bank_size"):
        PixelPatchKNN(overrides={"bank_size": 0})


def test_adaptive_attacks_cover_the_references(digits_split):
    from robustad.attacks.adaptive import attack_adaptive

    split = digits_split
    pixel = PixelKNN(overrides=NO_HOLDOUT).fit(split.train)
    result = attack_adaptive(pixel, split.test, split.test_labels, 0.2, steps=5)
    assert {"score", "knn-soft:0.01", "knn-soft:0.05"} <= set(result.variants)  # pixel kNN is a kNN score
    stats = ImageStats(overrides=NO_HOLDOUT).fit(split.train)
    result = attack_adaptive(stats, split.test, split.test_labels, 0.2, steps=5)
    assert set(result.variants) == {"score"} and "smooth by construction" in result.skipped["lse:0.02"]


def test_density_radii_are_each_entry_s_kth_neighbour_distance_with_a_floor():
    from robustad.methods.patch_bank import DENSITY_FLOOR, density_radii

    bank = torch.tensor([[0.0], [1.0], [3.0], [7.0], [7.0]])
    r = density_radii(bank, 1, chunk_size=2)
    nearest_other = torch.tensor([1.0, 1.0, 2.0, 0.0, 0.0])
    floor = DENSITY_FLOOR * float(nearest_other.median())
    assert torch.allclose(r, nearest_other.clamp_min(floor))  # the duplicates get the floor, not 0
    assert torch.allclose(density_radii(bank, 2), torch.tensor([3.0, 2.0, 3.0, 4.0, 4.0]))


def test_density_normalised_patch_knn_is_the_smallest_distance_ratio_and_round_trips(digits_split, tmp_path):
    from robustad.attacks.adaptive import knn_surrogate
    from robustad.methods.patch_bank import density_radii

    train, x = digits_split.train, digits_split.test[:10]
    det = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 4, "patch_stride": 2, "bank_size": 10**6,
                                   "density_k": 3, "chunk_size": 500}).fit(train)
    bank = det.scorer.bank
    r = density_radii(bank, 3)
    q = F.unfold(x, 4, stride=2).transpose(1, 2)
    brute = torch.stack([(torch.cdist(qi, bank) / r).min(dim=1).values.max() for qi in q])
    assert torch.allclose(det.score(x), brute, atol=1e-4)
    plain = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 4, "patch_stride": 2, "bank_size": 10**6}).fit(train)
    assert not torch.allclose(det.score(x), plain.score(x))
    # the attacks' surrogate at temperature None is the score itself, normalisation included
    assert torch.allclose(knn_surrogate(det.scorer, x), det.score(x), atol=1e-5)
    xg = x.clone().requires_grad_(True)
    knn_surrogate(det.scorer, xg, temperature=0.05).sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    det.save(tmp_path / "d")
    loaded = load_detector(tmp_path / "d")
    assert loaded.config.density_k == 3 and torch.allclose(loaded.score(x), det.score(x), atol=1e-6)
    with pytest.raises(ConfigError, match="density_k"):
        PixelPatchKNN(overrides={"density_k": -1})


def test_density_radii_follow_a_bank_loaded_in_place(digits_split):
    train = digits_split.train
    det = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 4, "patch_stride": 2, "density_k": 3,
                                   "bank_size": 500}).fit(train)
    other = PixelPatchKNN(overrides={**NO_HOLDOUT, "patch_size": 4, "patch_stride": 2, "density_k": 3,
                                     "bank_size": 500, "seed": 1}).fit(train)
    x = digits_split.test[:5]
    before = det.score(x)
    det.scorer.load_state_dict(other.scorer.state_dict())  # same shape, copied into the same tensor
    assert torch.allclose(det.score(x), other.score(x), atol=1e-6) and not torch.allclose(before, other.score(x))
