"""Loading a data set by name: the entry point for Python users (``robustad.data.load_split``)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from robustad.data.registry import DATASETS, load_dataset
from robustad.data.splits import AnomalySplit, check_limit, one_class_split

__all__ = ["AnomalySplit", "available_datasets", "load_split", "one_class_split"]


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_split` (see ``robustad data list``)."""
    return list(DATASETS)


def load_split(
    name: str,
    normal_classes: int | str | Iterable[int | str] | None = None,
    root: str | os.PathLike[str] | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    **options,
) -> AnomalySplit:
    """Load a named data set as an :class:`AnomalySplit`.

    Classification sets (mnist, fashion-mnist, digits, cifar10, ...) take ``normal_classes``
    (several = the unlabeled multi-class setting; ``ood=NAME`` takes the anomalies from another
    data set); anomaly-detection sets (mvtec, visa, ..., textures) take ``category=``.
    ``image_size`` resizes every image to ``image_size x image_size``. ``digits`` ships with
    scikit-learn and is split 70/30, stratified, with a fixed seed.
    """
    check_limit(image_size, "image_size")
    return load_dataset(name, normal_classes, root=root, max_train=max_train, max_test=max_test, seed=seed,
                        image_size=image_size, **options)
