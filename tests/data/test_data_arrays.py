import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from robustad.data.arrays import to_image_tensor
from robustad.errors import InputError


def test_uint8_nhw_becomes_n1hw_scaled():
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    t = to_image_tensor(x)
    assert t.shape == (1, 1, 2, 2) and t.dtype == torch.float32
    assert torch.allclose(t, torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]))


def test_float64_numpy_nchw_kept():
    x = np.random.default_rng(0).random((2, 3, 4, 5))
    t = to_image_tensor(x)
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.float32
    assert torch.allclose(t, torch.from_numpy(x).float())


def test_torch_uint8_rgb():
    t = to_image_tensor(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))
    assert t.shape == (2, 3, 4, 4) and torch.all(t == 1.0)


def test_big_endian_and_read_only_numpy():
    x = np.linspace(0, 1, 12).reshape(1, 1, 3, 4).astype(">f4")
    x.flags.writeable = False
    t = to_image_tensor(x)
    assert torch.allclose(t, torch.linspace(0, 1, 12).reshape(1, 1, 3, 4))


def test_list_of_label_tuples_is_stacked():
    items = [(np.full((4, 4), i * 50, dtype=np.uint8), i) for i in range(3)]
    t = to_image_tensor(items)
    assert t.shape == (3, 1, 4, 4)
    assert torch.allclose(t[:, 0, 0, 0], torch.tensor([0.0, 50 / 255, 100 / 255]))


def test_torch_dataset_of_pairs():
    ds = TensorDataset(torch.rand(5, 1, 6, 6), torch.arange(5))
    t = to_image_tensor(ds)
    assert t.shape == (5, 1, 6, 6)
    assert torch.equal(t, ds.tensors[0])


def test_list_of_bare_tensors():
    t = to_image_tensor([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    assert t.shape == (2, 3, 2, 2) and t[1].min() == 1.0


def test_nan_rejected_with_count():
    x = torch.rand(2, 1, 3, 3)
    x[0, 0, 0, 0] = float("nan")
    x[1, 0, 1, 1] = float("inf")
    with pytest.raises(InputError, match="2 of 18 values are NaN or infinite"):
        to_image_tensor(x, name="batch")


def test_out_of_range_reports_min_max():
    x = np.full((1, 1, 2, 2), 3.0)
    x[0, 0, 0, 0] = -0.5
    with pytest.raises(InputError) as err:
        to_image_tensor(x)
    msg = str(err.value)
    assert "min -0.5" in msg and "max 3" in msg and "divide uint8 pixels by 255" in msg


@pytest.mark.parametrize("x", [np.zeros((0, 28, 28), np.uint8), [], torch.zeros(3, 1, 0, 4)])
def test_empty_rejected(x):
    with pytest.raises(InputError, match="empty"):
        to_image_tensor(x)


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((28, 28), r"shape \(28, 28\) has 2 dims"),
        ((1, 1, 1, 4, 4), "has 5 dims"),
        ((2, 2, 4, 4), r"shape \(2, 2, 4, 4\) has 2 channels"),
        ((2, 8, 8, 3), "channels-last"),
    ],
)
def test_bad_shapes(shape, pattern):
    with pytest.raises(InputError, match=pattern) as err:
        to_image_tensor(torch.zeros(shape))
    assert "[N,C,H,W] with C in (1, 3)" in str(err.value)


def test_other_integer_dtypes_rejected():
    with pytest.raises(InputError, match="int32 is ambiguous"):
        to_image_tensor(torch.zeros(1, 1, 2, 2, dtype=torch.int32))


def test_mixed_item_shapes_rejected():
    with pytest.raises(InputError, match="different shapes"):
        to_image_tensor([np.zeros((4, 4)), np.zeros((5, 5))])


@pytest.mark.parametrize("x", ["images.png", 3.0, {"a": 1}])
def test_unsupported_types(x):
    with pytest.raises(InputError, match="cannot"):
        to_image_tensor(x)


def test_negative_values_rejected():
    with pytest.raises(InputError, match="min -0.25"):
        to_image_tensor(torch.full((1, 1, 2, 2), -0.25))
