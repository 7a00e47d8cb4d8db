"""The restricted unpickler: loads what CIFAR batches contain, refuses everything else."""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from robustad.data.formats._pickle import RestrictedUnpickler, load_pickle, read_cifar_batch
from robustad.errors import DataError


def _py2_str(b: bytes) -> bytes:
    # Python 2 str -> SHORT_BINSTRING / BINSTRING; loads as bytes with encoding="bytes".
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _py2_int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)  # BININT


def python2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A protocol-2 pickle laid out as Python 2 + old numpy wrote the CIFAR batches."""
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n" + _py2_int(0) + b"\x85" + _py2_str(b"b") + b"\x87R"
        + b"(" + _py2_int(1) + _py2_int(data.shape[0]) + _py2_int(data.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + b"tb"
        + b"\x89" + _py2_str(data.tobytes()) + b"tb"
    )
    label_list = b"](" + b"".join(_py2_int(v) for v in labels) + b"e"
    return (
        b"\x80\x02}("
        + _py2_str(b"batch_label") + _py2_str(b"training batch 1 of 5")
        + _py2_str(b"data") + array
        + _py2_str(b"labels") + label_list
        + b"u."
    )


def test_python2_layout_loads(tmp_path):
    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    blob = python2_batch(data, [3, 7])
    assert pickle.loads(blob, encoding="bytes")[b"labels"] == [3, 7]  # the hand-made pickle is valid
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    x, y = read_cifar_batch(path, b"labels", 10)
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(2, 3072), data)
    assert y.tolist() == [3, 7] and y.dtype == np.int64


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_protocols_load(tmp_path, protocol):
    data = np.full((3, 3072), 9, np.uint8)
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1, 2], b"filenames": [b"a.png"]}, protocol=protocol))
    out = load_pickle(path)
    np.testing.assert_array_equal(out[b"data"], data)
    assert out[b"filenames"] == [b"a.png"]


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_os_call_is_refused_and_not_run(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(os.remove, str(canary))}, protocol=2))
    with pytest.raises(DataError, match="not a CIFAR batch") as info:
        load_pickle(path)
    assert str(path) in str(info.value) and "remove" in str(info.value)
    assert canary.exists()


@pytest.mark.parametrize("evil", [_Evil(eval, "1+1"), _Evil(codecs.encode, "abc", "rot13"), _Evil(os.system, "true")])
def test_other_globals_are_refused(tmp_path, evil):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(evil, protocol=4))
    with pytest.raises(DataError, match="test_batch"):
        load_pickle(path)


def test_unpickler_refuses_directly():
    import io

    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(os.getcwd)), encoding="bytes").load()


def test_truncated_and_gzipped_files(tmp_path):
    blob = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    cut = tmp_path / "data_batch_2"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="data_batch_2"):
        read_cifar_batch(cut, b"labels", 10)
    gz = tmp_path / "data_batch_3"
    gz.write_bytes(gzip.compress(blob))
    with pytest.raises(DataError, match="extract"):
        read_cifar_batch(gz, b"labels", 10)


def test_wrong_content_is_named(tmp_path):
    path = tmp_path / "data_batch_4"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match="data_batch_4"):
        read_cifar_batch(path, b"labels", 10)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2))
    with pytest.raises(DataError, match="0..9"):
        read_cifar_batch(path, b"labels", 10)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2))
    with pytest.raises(DataError, match="fine_labels"):
        read_cifar_batch(path, b"fine_labels", 100)
