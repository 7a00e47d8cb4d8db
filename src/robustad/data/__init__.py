"""Data: MNIST-style data sets, image folders, and one-class anomaly splits."""

from robustad.data.arrays import to_image_tensor
from robustad.data.cache import atomic_write_bytes, cache_dir, sha256_file
from robustad.data.datasets import AnomalySplit, available_datasets, load_split, one_class_split
from robustad.data.folder import IMAGE_EXTENSIONS, list_images, load_images, save_image
from robustad.data.mnist import fetch_mnist, load_fashion_mnist, load_mnist, read_idx

__all__ = [
    "IMAGE_EXTENSIONS",
    "AnomalySplit",
    "atomic_write_bytes",
    "available_datasets",
    "cache_dir",
    "fetch_mnist",
    "list_images",
    "load_fashion_mnist",
    "load_images",
    "load_mnist",
    "load_split",
    "one_class_split",
    "read_idx",
    "save_image",
    "sha256_file",
    "to_image_tensor",
]
