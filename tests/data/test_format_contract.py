"""Every registered data format keeps the same contract: it describes itself, checks its files, lists
its categories or classes, and loads into a split with the same subset rules (fixture files in the
real layout for the formats read from disk; built-in formats need none)."""

import numpy as np
import pytest
import torch
from format_fixtures import WRITERS

from robustad.data.formats.base import AnomalyFormat, ClassFormat
from robustad.data.registry import DATASETS, check_dataset, dataset_info, load_dataset
from robustad.data.splits import AnomalySplit


def _arguments(name, root):
    """(root, load_dataset keyword arguments) for the format's fixture; writers return CLI flags."""
    info = dataset_info(name)
    if info.built_in:
        return None, ({"category": info.categories(None)[0]} if info.kind == "anomaly" else {"normal_classes": 3})
    flags = WRITERS[name](root)
    options = dict(zip(flags[::2], flags[1::2]))
    if name == "folder":
        return None, {"normal_dir": str(root / options["--normal-dir"]) if not options["--normal-dir"].startswith("/")
                      else options["--normal-dir"], "abnormal_dirs": [options["--abnormal-dir"]]}
    if "--normal-class" in options:
        return root, {"normal_classes": options["--normal-class"]}
    return root, {"category": options.get("--category")}  # None: a format with one category


def test_every_format_read_from_disk_has_a_fixture_writer():
    missing = [name for name, info in DATASETS.items() if not info.built_in and name not in WRITERS]
    assert not missing, f"formats without a fixture writer in tests/format_fixtures.py: {missing}"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_format_contract(name, tmp_path):
    info = dataset_info(name)
    assert info.name == name and info.kind in ("classes", "anomaly")
    assert isinstance(info, ClassFormat if info.kind == "classes" else AnomalyFormat)
    assert info.summary and info.example.startswith("robustad train --data") and info.layout.strip()
    for alias in info.aliases:
        assert dataset_info(alias.upper()) is info
    root, kwargs = _arguments(name, tmp_path / "data")
    if info.checkable:
        assert check_dataset(name, root) == []
        if not info.built_in:
            empty = tmp_path / "empty"
            empty.mkdir()
            assert check_dataset(name, empty), "an empty folder must be reported as unusable"
    if info.kind == "classes":
        assert len(info.class_names(root)) >= 2
    elif info.checkable:
        assert kwargs["category"] in info.categories(root) + ([None] if not info.needs_category else [])
    split = load_dataset(name, root=root, max_train=3, max_test=4, seed=1, image_size=8, **kwargs)
    assert isinstance(split, AnomalySplit)
    everything = load_dataset(name, root=root, seed=1, image_size=8, **kwargs)
    assert split.train.shape[0] == min(3, len(everything.train)) and len(everything.test) >= len(split.test)
    assert split.train.shape[-2:] == (8, 8) and split.test.shape[1:] == split.train.shape[1:]
    labels = split.test_labels.tolist()
    assert len(labels) == 4 and labels.count(0) == 2 and labels.count(1) == 2, "max_test keeps half normal, half anomalous"
    assert split.train.dtype == torch.float32 and 0.0 <= float(split.train.min()) and float(split.train.max()) <= 1.0
    again = load_dataset(name, root=root, max_train=3, max_test=4, seed=1, image_size=8, **kwargs)
    assert torch.equal(split.train, again.train) and torch.equal(split.test, again.test), "same seed, same split"
    if split.test_masks is not None:
        assert split.test_masks.shape == (4, 1, 8, 8)
        normal = split.test_masks[split.test_labels == 0]
        assert torch.all(normal == 0), "normal test images have empty masks"
    assert np.isfinite(split.train.numpy()).all()
