"""Anomaly maps: pixel metrics against masks, the map attack, and the report figure."""

import pytest
import torch

from robustad import PatchCobra
from robustad.data.registry import load_dataset
from robustad.errors import InputError
from robustad.evaluation.maps import evaluate_maps, pixel_auroc, plot_maps, pro_auc


def test_pixel_metrics_on_known_maps():
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, 0, 2:4, 2:4] = 1
    masks[1, 0, 5:8, 0:2] = 1
    perfect = masks * 2 + 0.1 * torch.rand(2, 1, 8, 8)
    assert pixel_auroc(perfect, masks) == 1.0 and pro_auc(perfect, masks) == pytest.approx(1.0)
    inverted = -perfect
    assert pixel_auroc(inverted, masks) == 0.0 and pro_auc(inverted, masks) == pytest.approx(0.0, abs=1e-6)
    # PRO weighs each region equally: finding only the small region scores half of it
    half = torch.zeros_like(masks)
    half[0] = masks[0]
    assert pro_auc(half, masks) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(InputError):
        pixel_auroc(perfect, torch.zeros_like(masks))


@pytest.fixture(scope="module")
def brick_detector():
    split = load_dataset("textures", category="brick", image_size=32, max_train=40, max_test=16, seed=0)
    det = PatchCobra(overrides={"train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 8,
                                "adversarial.steps": 1, "score.bank_size": 300}).fit(split.train, progress=False)
    return det, split


def test_maps_find_the_drawn_defects_and_the_map_attack_hurts_them(brick_detector, tmp_path):
    det, split = brick_detector
    result = evaluate_maps(det, split.test, split.test_labels, split.test_masks, eps=16 / 255, steps=5)
    assert result.pixel_auroc_clean > 0.8
    assert result.pixel_auroc_attack < result.pixel_auroc_clean - 0.05
    assert (result.attacked - split.test).abs().max() <= 16 / 255 + 1e-6
    path = plot_maps(det, split.test[-3:], split.test_masks[-3:], result.attacked[-3:], tmp_path / "maps.png",
                     title="brick")
    assert path.stat().st_size > 10_000
