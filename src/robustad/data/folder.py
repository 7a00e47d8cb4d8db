"""Read image files (a folder or a list of paths) into one batch, and write them back.

Nothing is converted silently: mixed channel counts or mixed sizes are errors
unless the caller asks for a channel count or a size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robustad.errors import DataError, InputError

__all__ = ["IMAGE_EXTENSIONS", "convert_channels", "image_files", "list_images", "load_images", "read_image", "read_mask",
           "resize_one", "save_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's "L" conversion
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

PathLike = str | os.PathLike[str]

# the most pixels one image file may claim (40 MP: a 7300 x 5500 photograph); checked from the
# header, before anything is decoded, so a small file cannot make robustad allocate gigabytes
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
MAX_PIXELS_ENV = "ROBUSTAD_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{MAX_PIXELS_ENV}={text!r} is not a positive number of pixels; e.g. {MAX_PIXELS_ENV}=100000000")
    return value


def list_images(directory: PathLike) -> list[Path]:
    """Image files directly inside ``directory`` (not recursive), sorted by name."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(f"'{folder}' is not a directory; pass a folder of images or image files.")
    named = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]  # ._x.png: macOS metadata
    broken = sorted(p for p in named if p.is_symlink() and not p.exists())  # dangling, or a loop
    if broken:
        raise DataError(f"'{broken[0]}' is a link to nothing (its target is missing, or links loop)"
                        f"{f' and so are {len(broken) - 1} more' if len(broken) > 1 else ''}; fix or remove "
                        "the link, then run again")
    return sorted(p for p in named if p.is_file())


def image_files(paths_or_dir: PathLike | Iterable[PathLike]) -> list[Path]:
    """The image files a folder, a file or a list of files stands for, checked to exist (nothing is read)."""
    return _resolve_paths(paths_or_dir)


def _resolve_paths(paths_or_dir: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths_or_dir, str | os.PathLike):
        single = Path(paths_or_dir)
        if single.is_dir():
            paths = list_images(single)
            if not paths:
                raise DataError(
                    f"no images in '{single}': looked (not recursively) for files ending in "
                    f"{', '.join(IMAGE_EXTENSIONS)} (any case). Put images there or pass another folder."
                )
            return paths
        candidates = [single]
    else:
        candidates = [Path(p) for p in paths_or_dir]
    if not candidates:
        raise DataError("the list of image paths is empty; pass at least one image file.")
    for p in candidates:
        if not p.exists():
            raise DataError(f"image file '{p}' does not exist; check the path.")
        if not p.is_file():
            raise DataError(f"'{p}' is not a file; pass image files or a single folder.")
    return candidates


def _pixels(img: Image.Image, path: Path) -> np.ndarray:
    """Decode a PIL image to float32 ``[H, W, C]`` in [0, 1] with C in (1, 3)."""
    mode = img.mode
    if mode in _GRAY_MODES:
        if mode == "LA":
            img = img.convert("L")  # drop alpha
        elif mode == "1":
            img = img.convert("L")
        arr = np.asarray(img)
        if arr.dtype == np.uint8:
            out = arr.astype(np.float32) / 255.0
        elif arr.dtype.kind in "iu":
            # 16-bit grayscale (PIL opens it as "I;16" or as 32-bit "I").
            if arr.min() < 0 or arr.max() > 65535:
                raise DataError(
                    f"'{path}': {mode} pixel values {arr.min()}..{arr.max()} are not 8- or "
                    "16-bit; save the image as 8- or 16-bit grayscale."
                )
            out = arr.astype(np.float32) / 65535.0
        else:
            out = arr.astype(np.float32)
            if not np.isfinite(out).all() or out.min() < 0.0 or out.max() > 1.0:
                raise DataError(
                    f"'{path}': float pixels must be finite and in [0, 1]; "
                    "rescale the image or save it as 8-bit."
                )
        return out[:, :, None]
    # Everything else (RGB, RGBA, P, CMYK, YCbCr, ...) becomes RGB; alpha is dropped.
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _read_image(path: Path) -> torch.Tensor:
    """One file as float32 ``[C, H, W]`` in [0, 1]."""
    limit = max_image_pixels()
    try:
        with Image.open(path) as img:
            if img.width * img.height > limit:
                raise DataError(
                    f"'{path}' is {img.width}x{img.height} pixels, more than the {limit:,} robustad reads; "
                    f"downscale it first, or raise the limit with {MAX_PIXELS_ENV}=... if the file is genuine")
            img.load()  # decode now so truncated files fail here, naming the file
            arr = _pixels(img, path)
    except DataError:
        raise
    except _PIL_ERRORS as exc:
        raise DataError(
            f"cannot read image '{path}': {exc}. The file is corrupt or not an image; "
            "replace or remove it."
        ) from exc
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _check_mixed_channels(images: list[torch.Tensor], paths: list[Path]) -> None:
    example = {}
    for img, p in zip(images, paths, strict=True):
        example.setdefault(img.shape[0], p)
    if len(example) > 1:
        raise DataError(
            f"images mix grayscale and colour (e.g. '{example[1]}' has 1 channel, "
            f"'{example[3]}' has 3); pass channels=1 or channels=3 to convert them all."
        )


def convert_channels(img: torch.Tensor, channels: int) -> torch.Tensor:
    if img.shape[0] == channels:
        return img
    if channels == 3:
        return img.expand(3, -1, -1)
    return torch.tensordot(_LUMA, img, dims=1).unsqueeze(0)


def _check_sizes(images: list[torch.Tensor], paths: list[Path]) -> None:
    example: dict[tuple[int, int], Path] = {}
    for img, p in zip(images, paths, strict=True):
        example.setdefault((img.shape[1], img.shape[2]), p)
    if len(example) > 1:
        found = "; ".join(f"{h}x{w} (e.g. '{p}')" for (h, w), p in sorted(example.items()))
        raise DataError(
            f"images have different sizes (HxW): {found}. Images are not resized unless you ask: "
            "--image-size S (robustad train / evaluate), --resize (robustad score) or size=S (load_images)."
        )


def resize_one(img: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    if tuple(img.shape[1:]) == (size, size):
        return img
    if mode == "nearest":
        return F.interpolate(img[None], size=(size, size), mode="nearest")[0]
    out = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[0].clamp_(0.0, 1.0)


def read_image(path: PathLike, size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """One image file as float32 ``[C, H, W]`` in [0, 1], optionally converted and resized.

    Resizing here, image by image, keeps large photographs (MVTec's are 1024 px) from
    piling up in memory at full size before they are shrunk.
    """
    _check_args(size, channels)
    img = _read_image(Path(path))
    if channels is not None:
        img = convert_channels(img, channels)
    return img if size is None else resize_one(img, size)


def read_mask(path: PathLike, size: int | None = None, expect_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """A ground-truth mask as float32 ``[1, H, W]`` with 1 where the defect is (any non-zero pixel).

    ``expect_hw`` is the (H, W) of the image the mask belongs to; a mask of another size is an
    error naming the file. ``size`` resizes it (nearest neighbour, so it stays binary).
    """
    _check_args(size, None)
    mask = _read_image(Path(path))
    if expect_hw is not None and tuple(mask.shape[1:]) != tuple(expect_hw):
        raise DataError(
            f"mask '{path}' is {mask.shape[1]}x{mask.shape[2]} but its image is {expect_hw[0]}x{expect_hw[1]} "
            "(HxW); masks must have their image's size. Check that the mask belongs to that image."
        )
    binary = (mask.amax(dim=0, keepdim=True) > 0).float()
    return binary if size is None else resize_one(binary, size, mode="nearest")


def _check_args(size: int | None, channels: int | None) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InputError(f"size must be a positive integer or None, got {size!r}.")
    if channels is not None and channels not in (1, 3):
        raise InputError(f"channels must be 1, 3 or None, got {channels!r}.")


def load_images(
    paths_or_dir: PathLike | Iterable[PathLike],
    size: int | None = None,
    channels: int | None = None,
) -> tuple[torch.Tensor, list[Path]]:
    """Load images into a float32 tensor ``[N, C, H, W]`` in [0, 1], plus their paths.

    ``paths_or_dir`` is a folder (its image files, sorted, not recursive), a
    single file, or a list of files. Grayscale files give 1 channel and colour
    files 3 (alpha dropped). ``channels`` converts all images to 1 or 3
    channels; ``size`` resizes all of them to ``size x size`` (bilinear).
    Without those, mixed channel counts or sizes raise :class:`DataError`.
    """
    _check_args(size, channels)
    paths = _resolve_paths(paths_or_dir)
    images = [read_image(p, size=size, channels=channels) for p in paths]
    if channels is None:
        _check_mixed_channels(images, paths)
    if size is None:
        _check_sizes(images, paths)
    return torch.stack(images).contiguous(), paths


def save_image(image: torch.Tensor | np.ndarray, path: PathLike) -> Path:
    """Write one image ``[C, H, W]`` (C in 1, 3) or ``[H, W]`` to ``path``.

    Floats must be in [0, 1] and are rounded to 8 bits; uint8 is written as is.
    The format follows the file extension.
    """
    t = torch.as_tensor(image).detach().cpu()
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise InputError(
            f"save_image: shape {tuple(t.shape)} is not [C,H,W] with C in (1, 3) or [H,W]."
        )
    if t.dtype != torch.uint8:
        t = t.float()
        if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
            raise InputError("save_image: float pixels must be finite and in [0, 1]; clamp them first.")
        t = (t * 255.0).round_().to(torch.uint8)
    arr = t.permute(1, 2, 0).numpy()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(target)
    return target
