"""The surfaces validation set: real photographs, drawn defects, masks, deterministic."""

import pytest
import torch

from robustad.data.formats import surfaces
from robustad.data.registry import load_dataset
from robustad.errors import DataError


@pytest.mark.parametrize("category,channels", [("cell", 1), ("tissue", 3), ("stars", 3)])
def test_each_category_loads_with_masks_on_its_defects(category, channels):
    split = surfaces.load(category=category, n_train=20, n_test_normal=5, n_test_anomalous=10)
    assert split.train.shape == (20, channels, 64, 64) and split.test.shape == (15, channels, 64, 64)
    assert split.semi_synthetic and split.test_labels.tolist() == [0] * 5 + [1] * 10
    assert split.test_masks[:5].sum() == 0
    assert (split.test_masks[5:].flatten(1).sum(1) > 0).all()
    kinds = [p.rsplit("-", 1)[1] for p in split.test_paths[5:]]
    assert kinds == list(surfaces.DEFECTS) * 2
    again = surfaces.load(category=category, n_train=20, n_test_normal=5, n_test_anomalous=10)
    assert torch.equal(again.test, split.test) and torch.equal(again.train, split.train)  # deterministic


def test_subsets_sizes_channels_and_seeds():
    a = load_dataset("surfaces", category="cell", max_train=30, max_test=20, image_size=32, channels=3, seed=1)
    assert a.train.shape == (30, 3, 32, 32) and a.test.shape == (20, 3, 32, 32)
    assert int(a.test_labels.sum()) == 10
    b = load_dataset("surfaces", category="cell", max_train=30, max_test=20, image_size=32, channels=3, seed=2)
    assert not torch.equal(a.train, b.train)


def test_training_and_test_regions_do_not_overlap():
    for category, (_, train_rows, test_rows) in surfaces._SOURCES.items():
        assert train_rows[1] <= test_rows[0], category


def test_bad_arguments():
    with pytest.raises(DataError, match="unknown category"):
        surfaces.load(category="wood")
    with pytest.raises(DataError, match="channels"):
        surfaces.load(channels=2)
    assert surfaces.check() == []
    assert surfaces.categories() == ["cell", "tissue", "stars"]
