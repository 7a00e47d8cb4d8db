import hashlib
from pathlib import Path

import pytest

from robustad.data.cache import atomic_write_bytes, cache_dir, sha256_file


def test_cache_dir_prefers_robustad_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTAD_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = cache_dir()
    assert root == tmp_path / "explicit"
    assert root.is_dir()


def test_cache_dir_uses_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTAD_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "robustad"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "robustad"
    assert (tmp_path / "home" / ".cache" / "robustad").is_dir()


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000  # larger than one read chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "file.bin"
    assert atomic_write_bytes(target, b"first") == target
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]  # no temp files left


def test_atomic_write_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert list(Path(tmp_path).iterdir()) == []
