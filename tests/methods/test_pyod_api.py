"""The PyOD conventions: NumPy or tensor, uint8 or float in; NumPy out where PyOD returns NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustad import PixelKNN
from robustad.methods.base import NotFittedError


def _uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).numpy()


def test_numpy_uint8_scores_equal_the_tensor_path(fitted_cobra, digits_split):
    images = _uint8(digits_split.test)
    as_tensor = torch.from_numpy(images).float() / 255
    expected = fitted_cobra.score(as_tensor)
    assert torch.equal(fitted_cobra.score(images), expected)  # NumPy uint8
    assert torch.equal(fitted_cobra.score(torch.from_numpy(images)), expected)  # tensor uint8
    assert torch.equal(fitted_cobra.score(images.astype(np.float32) / 255), expected)  # NumPy float
    assert np.array_equal(fitted_cobra.decision_function(images), expected.numpy())


def test_fit_decision_function_predict_fit_predict_on_numpy(digits_split):
    train, test = _uint8(digits_split.train), _uint8(digits_split.test)
    det = PixelKNN(image_size=None)
    assert det.decision_scores_ is None and det.labels_ is None
    labels = det.fit_predict(train)
    assert isinstance(labels, np.ndarray) and labels.shape == (len(train) ,) and labels.dtype == np.int64
    assert isinstance(det.decision_scores_, np.ndarray) and det.decision_scores_.shape == (len(train),)
    assert np.array_equal(labels, (det.decision_scores_ > det.threshold_).astype(np.int64))
    scores = det.decision_function(test)
    assert isinstance(scores, np.ndarray) and scores.shape == (len(test),)
    predicted = det.predict(test)
    assert isinstance(predicted, np.ndarray) and set(np.unique(predicted)) <= {0, 1}
    assert np.array_equal(predicted, (scores > det.threshold_).astype(np.int64))
    assert torch.is_tensor(det.predict(torch.from_numpy(test)))  # a tensor in gives a tensor out
    # anomalies (label 1) score higher than normal test digits on average: the scores mean something
    y = digits_split.test_labels.numpy()
    assert scores[y == 1].mean() > scores[y == 0].mean()


def test_normalized_score_puts_the_threshold_at_one_half(fitted_cobra, digits_split):
    raw = fitted_cobra.score(digits_split.test)
    normalized = fitted_cobra.normalized_score(digits_split.test)
    assert ((normalized > 0) & (normalized < 1)).all()
    assert torch.equal(normalized > 0.5, raw > fitted_cobra.threshold_)
    order = torch.argsort(raw)
    assert (normalized[order].diff() >= 0).all()  # monotone: AUROC and decisions unchanged


def test_other_integer_images_and_strings_are_refused_with_a_hint(fitted_cobra, digits_split):
    with pytest.raises(Exception, match="uint8"):
        fitted_cobra.score(_uint8(digits_split.test).astype(np.int32))
    with pytest.raises(Exception, match="NumPy array"):
        fitted_cobra.score("images/")


def test_fit_predict_needs_a_threshold(digits_split):
    det = PixelKNN(image_size=None, overrides={"score.holdout_fraction": 0.0})
    with pytest.raises(NotFittedError, match="no threshold"):
        det.fit_predict(_uint8(digits_split.train))
