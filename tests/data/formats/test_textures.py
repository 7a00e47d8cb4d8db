"""The semi-synthetic textures set: crops, defects, masks, determinism, train/test separation."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")

from robustad.data.formats import textures  # noqa: E402
from robustad.errors import DataError, InputError  # noqa: E402

SMALL = dict(crop_size=32, n_train=12, n_test_normal=8, n_test_anomalous=8)


@pytest.fixture(scope="module")
def brick():
    return textures.load(category="brick", seed=0, **SMALL)


def _photo(category: str) -> np.ndarray:
    from skimage import data

    return getattr(data, category)().astype(np.float32) / 255.0


# --------------------------------------------------------------------------- contract


def test_contract():
    assert textures.categories() == ["brick", "grass", "gravel"]
    assert textures.categories("/ignored") == ["brick", "grass", "gravel"]
    assert textures.check() == []
    assert "scikit-image" in textures.LAYOUT and "semi-synthetic" in textures.LAYOUT
    assert textures.DEFECTS == ("scratch", "stain", "hole", "patch")
    assert "semi-synthetic" in textures.__doc__ and "semi-synthetic" in textures.load.__doc__


def test_unknown_category_names_it_and_lists_the_three():
    with pytest.raises(DataError) as err:
        textures.load(category="carpet", **SMALL)
    msg = str(err.value)
    assert "carpet" in msg and all(c in msg for c in ("brick", "grass", "gravel"))


@pytest.mark.parametrize("bad", [dict(crop_size=300), dict(crop_size=4), dict(channels=2),
                                 dict(image_size=0), dict(max_test=0), dict(n_test_anomalous=0)])
def test_bad_arguments(bad):
    with pytest.raises(DataError):
        textures.load(**{**SMALL, **bad})


def test_does_not_use_the_training_pseudo_anomalies():
    source = inspect.getsource(textures)
    assert "robustad.transforms" not in source
    assert not re.search(r"^\s*(from|import)\s+robustad\.transforms", source, re.M)


# --------------------------------------------------------------------------- the split


def test_shapes_dtypes_range_labels(brick):
    s = brick
    assert s.name == "textures" and s.category == "brick" and s.semi_synthetic
    assert s.normal_classes == ()
    assert s.train.shape == (12, 1, 32, 32) and s.test.shape == (16, 1, 32, 32)
    for x in (s.train, s.test):
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert s.test_labels.dtype == torch.int64
    assert s.test_labels.tolist() == [0] * 8 + [1] * 8
    assert "semi-synthetic" in s.describe()


def test_masks_zero_for_normals_nonempty_for_anomalies(brick):
    m, y = brick.test_masks, brick.test_labels
    assert m.shape == (16, 1, 32, 32) and m.dtype == torch.float32
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    area = m.flatten(1).sum(1)
    assert (area[y == 0] == 0).all()
    assert (area[y == 1] > 0).all()


def test_paths_name_the_kinds_round_robin(brick):
    paths = brick.test_paths
    assert paths[:2] == ["textures/brick/test/normal/0000", "textures/brick/test/normal/0001"]
    kinds = [p.rsplit("-", 1)[1] for p in paths[8:]]
    assert kinds == list(textures.DEFECTS) * 2
    assert paths[8 + 3] == "textures/brick/test/anomaly/0003-patch"


def test_normal_crops_are_photo_crops_at_the_helper_boxes(brick):
    photo = _photo("brick")
    train_boxes = textures.crop_boxes("train", 12, 32, seed=0)
    test_boxes = textures.crop_boxes("test", 16, 32, seed=0)
    for k, (t, l, b, r) in enumerate(train_boxes):
        assert torch.equal(brick.train[k, 0], torch.from_numpy(photo[t:b, l:r]))
    for k, (t, l, b, r) in enumerate(test_boxes[:8]):
        assert torch.equal(brick.test[k, 0], torch.from_numpy(photo[t:b, l:r]))
    # an anomaly is its clean crop plus a defect: equal outside the (dilated) mask
    t, l, b, r = test_boxes[9]
    clean = torch.from_numpy(photo[t:b, l:r])
    assert not torch.equal(brick.test[9, 0], clean)


def test_train_and_test_regions_are_disjoint():
    for crop in (32, 64, 192):
        train = textures.crop_boxes("train", 500, crop, seed=3)
        test = textures.crop_boxes("test", 200, crop, seed=3)
        assert (train[:, 2] - train[:, 0] == crop).all() and (test[:, 3] - test[:, 1] == crop).all()
        assert train[:, 0].min() >= textures.TRAIN_ROWS[0] and train[:, 2].max() <= textures.TRAIN_ROWS[1]
        assert test[:, 0].min() >= textures.TEST_ROWS[0] and test[:, 2].max() <= textures.TEST_ROWS[1]
        assert min(train[:, 1].min(), test[:, 1].min()) >= 0 and max(train[:, 3].max(), test[:, 3].max()) <= 512
        # no train box intersects any test box (pairwise rectangle test)
        rows = (train[:, None, 0] < test[None, :, 2]) & (test[None, :, 0] < train[:, None, 2])
        cols = (train[:, None, 1] < test[None, :, 3]) & (test[None, :, 1] < train[:, None, 3])
        assert not (rows & cols).any()
    with pytest.raises(InputError):
        textures.crop_boxes("val", 3, 32)


def test_deterministic_and_seed_dependent():
    a = textures.load(category="grass", seed=5, **SMALL)
    b = textures.load(category="grass", seed=5, **SMALL)
    c = textures.load(category="grass", seed=6, **SMALL)
    for name in ("train", "test", "test_masks", "test_labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.numpy().tobytes() == y.numpy().tobytes(), name
    assert a.test_paths == b.test_paths
    assert not torch.equal(a.train, c.train) and not torch.equal(a.test, c.test)


def test_max_train_max_test_subsample_without_changing_images():
    full = textures.load(category="gravel", seed=1, **SMALL)
    sub = textures.load(category="gravel", seed=1, max_train=5, max_test=6, **SMALL)
    assert len(sub.train) == 5 and len(sub.test) == 6
    assert sub.test_labels.tolist() == [0, 0, 0, 1, 1, 1]
    index = {p: i for i, p in enumerate(full.test_paths)}
    for k, p in enumerate(sub.test_paths):
        assert torch.equal(sub.test[k], full.test[index[p]])
        assert torch.equal(sub.test_masks[k], full.test_masks[index[p]])
    train_full = {t.numpy().tobytes() for t in full.train}
    assert all(t.numpy().tobytes() in train_full for t in sub.train)


def test_image_size_and_channels():
    s = textures.load(category="brick", image_size=16, channels=3, **SMALL)
    assert s.train.shape == (12, 3, 16, 16) and s.test.shape == (16, 3, 16, 16)
    assert torch.equal(s.test[:, 0], s.test[:, 2])
    assert s.test_masks.shape == (16, 1, 16, 16)
    area = s.test_masks.flatten(1).sum(1)
    assert (area[s.test_labels == 1] > 0).all() and (area[s.test_labels == 0] == 0).all()


# --------------------------------------------------------------------------- defects on their own


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


AREA = {"scratch": (0.002, 0.08), "stain": (0.02, 0.2), "hole": (0.02, 0.25), "patch": (0.02, 0.2)}


@pytest.mark.parametrize("kind", textures.DEFECTS)
@pytest.mark.parametrize("side", [32, 64])
def test_defect_changes_pixels_only_near_its_mask(kind, side):
    brick, gravel = _photo("brick"), _photo("gravel")
    for k in range(6):
        image = brick[330 + k * 10: 330 + k * 10 + side, 40 * k: 40 * k + side].astype(np.float64)
        before = image.copy()
        donor = gravel[400:400 + side + 8, 100:100 + side + 8]
        out, mask = textures.make_defect(image, kind, np.random.default_rng(k), donor=donor)
        assert np.array_equal(image, before)  # the input is left alone
        assert out.shape == image.shape and out.dtype == np.float32
        assert mask.shape == image.shape and mask.dtype == bool
        assert 0.0 <= out.min() and out.max() <= 1.0
        lo, hi = AREA[kind]
        assert lo <= mask.mean() <= hi, (kind, k, mask.mean())
        changed = np.abs(out - image) > 1e-3
        assert changed.sum() >= 0.5 * mask.sum()  # the defect is visible where its mask says
        near = _dilate(mask, max(2, side // 16))
        assert changed[near].sum() >= 0.95 * changed.sum(), (kind, k)
        strong = np.abs(out - image) > 0.05
        assert not strong[~_dilate(mask, 1 + side // 16)].any(), (kind, k)


def test_make_defect_is_seeded():
    image = _photo("grass")[340:372, 0:32]
    a = textures.make_defect(image, "stain", np.random.default_rng(4))
    b = textures.make_defect(image, "stain", np.random.default_rng(4))
    c = textures.make_defect(image, "stain", np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_make_defect_errors():
    image = _photo("grass")[340:372, 0:32]
    with pytest.raises(InputError, match="kind"):
        textures.make_defect(image, "crack", np.random.default_rng(0))
    with pytest.raises(InputError, match="donor"):
        textures.make_defect(image, "patch", np.random.default_rng(0))
    with pytest.raises(InputError, match="donor"):
        textures.make_defect(image, "patch", np.random.default_rng(0), donor=image[:10, :10])
    with pytest.raises(InputError):
        textures.make_defect(image[None], "hole", np.random.default_rng(0))


# --------------------------------------------------------------------------- not trivially detectable


@pytest.mark.parametrize("category", textures.CATEGORIES)
def test_mean_intensity_does_not_separate_anomalies(category):
    """Anomalies must not be found by global brightness alone (either direction)."""
    from sklearn.metrics import roc_auc_score

    s = textures.load(category=category, seed=0, crop_size=32, n_train=1, n_test_normal=48, n_test_anomalous=48)
    auc = roc_auc_score(s.test_labels.numpy(), s.test.mean(dim=(1, 2, 3)).numpy())
    assert max(auc, 1.0 - auc) < 0.95, auc
