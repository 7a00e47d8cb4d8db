import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from robustad.data.registry import dataset_info
from robustad.data.datasets import AnomalySplit, available_datasets, load_split, one_class_split
from robustad.errors import DataError


def _toy(n_train: int = 100, n_test: int = 60, classes: int = 5):
    rng = np.random.default_rng(0)
    train_y = np.arange(n_train) % classes
    test_y = rng.permutation(np.arange(n_test) % classes)
    # Pixel value encodes the class so tests can check which images were kept.
    train_x = np.repeat(train_y[:, None, None] * 50, 16, axis=1).reshape(-1, 4, 4).astype(np.uint8)
    test_x = (test_y[:, None, None] * 50 + np.zeros((1, 4, 4))).astype(np.uint8)
    return train_x, train_y, test_x, test_y


def test_train_is_normal_only_and_labels_mark_anomalies():
    train_x, train_y, test_x, test_y = _toy()
    split = one_class_split(train_x, train_y, test_x, test_y, normal_classes=[1, 3], name="toy")
    assert isinstance(split, AnomalySplit)
    assert split.train.shape == (40, 1, 4, 4) and split.train.dtype == torch.float32
    assert set(torch.unique(split.train * 255).round().tolist()) == {50.0, 150.0}
    assert split.test.shape == (60, 1, 4, 4)
    assert split.test_labels.dtype == torch.int64
    assert split.test_labels.tolist() == [0 if c in (1, 3) else 1 for c in test_y]
    assert split.normal_classes == (1, 3)


def test_single_int_and_tensor_inputs():
    train_x, train_y, test_x, test_y = _toy()
    split = one_class_split(
        torch.from_numpy(train_x), torch.from_numpy(train_y), torch.from_numpy(test_x),
        torch.from_numpy(test_y), normal_classes=2, name="toy",
    )
    assert split.normal_classes == (2,) and len(split.train) == 20
    assert int(split.test_labels.sum()) == 48


def test_max_train_is_seeded_subset():
    train_x, train_y, test_x, test_y = _toy()
    a = one_class_split(train_x, train_y, test_x, test_y, [0], "toy", max_train=7, seed=1)
    b = one_class_split(train_x, train_y, test_x, test_y, [0], "toy", max_train=7, seed=1)
    assert len(a.train) == 7 and torch.equal(a.train, b.train)
    assert torch.all(a.train == 0)


def test_max_test_is_balanced_and_seeded():
    train_x, train_y, test_x, test_y = _toy(n_test=200)
    s1 = one_class_split(train_x, train_y, test_x, test_y, [0], "toy", max_test=30, seed=3)
    assert len(s1.test) == 30
    assert int(s1.test_labels.sum()) == 15
    # Same seed -> same subset, whatever max_train is.
    s2 = one_class_split(train_x, train_y, test_x, test_y, [0], "toy", max_test=30, max_train=5, seed=3)
    assert torch.equal(s1.test, s2.test) and torch.equal(s1.test_labels, s2.test_labels)
    s3 = one_class_split(train_x, train_y, test_x, test_y, [1], "toy", max_test=30, seed=4)
    assert int(s3.test_labels.sum()) == 15
    # Normals are scarce (40 of 200): all of them, and the rest anomalies.
    s4 = one_class_split(train_x, train_y, test_x, test_y, [0], "toy", max_test=150)
    assert len(s4.test) == 150 and int((s4.test_labels == 0).sum()) == 40


def test_max_test_keeps_label_image_alignment():
    train_x, train_y, test_x, test_y = _toy(n_test=200)
    s = one_class_split(train_x, train_y, test_x, test_y, [2], "toy", max_test=40, seed=9)
    is_normal_pixel = (s.test[:, 0, 0, 0] * 255).round() == 100
    assert torch.equal(is_normal_pixel, s.test_labels == 0)


def test_unknown_normal_class_lists_valid_classes():
    train_x, train_y, test_x, test_y = _toy()
    with pytest.raises(DataError, match=r"\[7\].*valid classes are \[0, 1, 2, 3, 4\]"):
        one_class_split(train_x, train_y, test_x, test_y, [1, 7], "toy")


def test_all_classes_normal_is_rejected():
    train_x, train_y, test_x, test_y = _toy()
    with pytest.raises(DataError, match="nothing is anomalous"):
        one_class_split(train_x, train_y, test_x, test_y, range(5), "toy")


def test_empty_normal_classes_rejected():
    train_x, train_y, test_x, test_y = _toy()
    with pytest.raises(DataError, match="empty"):
        one_class_split(train_x, train_y, test_x, test_y, [], "toy")


def test_normal_class_absent_from_training_set():
    train_x, train_y, test_x, test_y = _toy()
    test_y = test_y.copy()
    test_y[0] = 9  # class 9 exists only in the test labels
    with pytest.raises(DataError, match="training set has no images of normal classes"):
        one_class_split(train_x, train_y, test_x, test_y, [9], "toy")


def test_test_set_without_normals_is_rejected():
    train_x, train_y, test_x, _ = _toy()
    with pytest.raises(DataError, match="no normal images"):
        one_class_split(train_x, train_y, test_x, np.full(60, 4), [0], "toy")


@pytest.mark.parametrize("kwargs", [{"max_train": 0}, {"max_test": -3}, {"max_train": 2.5}])
def test_bad_limits(kwargs):
    train_x, train_y, test_x, test_y = _toy()
    with pytest.raises(DataError, match="positive integer"):
        one_class_split(train_x, train_y, test_x, test_y, [0], "toy", **kwargs)


def test_label_length_mismatch():
    train_x, train_y, test_x, test_y = _toy()
    with pytest.raises(DataError, match="train_y must be 100 integer class labels"):
        one_class_split(train_x, train_y[:-1], test_x, test_y, [0], "toy")


def test_digits_split():
    digits = load_digits()
    split = load_split("digits", [0])
    zeros_total = int((digits.target == 0).sum())
    n_test_normal = int((split.test_labels == 0).sum())
    assert split.name == "digits"
    assert split.train.shape[1:] == (1, 8, 8)
    assert len(split.test) == 540  # 30% of 1797, rounded up
    assert len(split.train) + n_test_normal == zeros_total  # every zero lands in exactly one part
    assert abs(len(split.train) / zeros_total - 0.7) < 0.02  # stratified
    # Every training image is a real "0" from the data set.
    zeros = {(img / 16.0).astype(np.float32).tobytes() for img in digits.images[digits.target == 0]}
    assert all(img[0].numpy().tobytes() in zeros for img in split.train)
    assert float(split.train.max()) <= 1.0 and float(split.train.min()) >= 0.0


def test_digits_split_is_deterministic_and_seed_only_subsamples():
    a = load_split("digits", [3], max_train=20, seed=0)
    b = load_split("digits", [3], max_train=20, seed=0)
    c = load_split("digits", [3], max_train=20, seed=1)
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert torch.equal(a.test, c.test)  # the train/test partition does not depend on seed


def test_image_size_resizes_and_clamps():
    split = load_split("digits", [1], image_size=16, max_test=50)
    assert split.train.shape[1:] == (1, 16, 16) and split.test.shape == (50, 1, 16, 16)
    assert float(split.train.min()) >= 0.0 and float(split.train.max()) <= 1.0
    same = load_split("digits", [1], image_size=8)
    assert torch.equal(same.train, load_split("digits", [1]).train)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match=r"unknown data set 'cifar'.*cifar10, .*mnist, fashion-mnist, digits"):
        load_split("cifar", [0])


def test_available_datasets():
    names = available_datasets()
    kinds = [dataset_info(n).kind for n in names]
    assert kinds == sorted(kinds, key=lambda k: k != "classes")  # classification sets are listed first
    assert names.index("fashion-mnist") == names.index("mnist") + 1 == names.index("digits") - 1
    assert {"cifar10", "cifar100", "svhn", "imagenet30", "mvtec", "visa", "dagm", "isic", "cityscapes",
            "folder", "textures"} <= set(names)


def test_describe():
    split = load_split("digits", [0, 1], max_test=100)
    text = split.describe()
    assert text.startswith("digits normal classes [0, 1]: train ")
    assert "(1x8x8)" in text and "test 100 images (50 normal, 50 anomalous)" in text
    # for detectors trained elsewhere the training split is left out
    assert split.describe(train=False) == "digits normal classes [0, 1]: test 100 images (50 normal, 50 anomalous; 1x8x8)"
