"""Fixture files in each data format's real on-disk layout, shared by the CLI tests and the format
contract test. Each writer fills ``root`` and returns the CLI arguments that pick its category/class."""

import csv
import gzip
import pickle

import numpy as np
from PIL import Image

SIDE = 16


def _png(path, seed, mode="RGB", side=SIDE, ext=None):
    rng = np.random.default_rng(seed)
    shape = (side, side, 3) if mode == "RGB" else (side, side)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def _mask(path, side=SIDE):
    m = np.zeros((side, side), np.uint8)
    m[4:9, 5:11] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)


def mvtec(root):
    for i in range(10):
        _png(root / "bottle/train/good" / f"{i:03d}.png", i)
    for i in range(3):
        _png(root / "bottle/test/good" / f"{i:03d}.png", 100 + i)
        _png(root / "bottle/test/broken_large" / f"{i:03d}.png", 200 + i)
        _mask(root / "bottle/ground_truth/broken_large" / f"{i:03d}_mask.png")
    return ["--category", "bottle"]


def btad(root):
    """Product 02's layout: bitmap images, PNG masks named by the image's stem."""
    for i in range(10):
        _png(root / "02/train/ok" / f"{i:04d}.bmp", 300 + i)
    for i in range(3):
        _png(root / "02/test/ok" / f"{i:04d}.bmp", 400 + i)
        _png(root / "02/test/ko" / f"{i:04d}.bmp", 500 + i)
        _mask(root / "02/ground_truth/ko" / f"{i:04d}.png")
    return ["--category", "02"]


def visa(root):
    rows = [["object", "split", "label", "image", "mask"]]
    for i in range(10):
        rows.append(["candle", "train", "normal", f"candle/Data/Images/Normal/{i:04d}.JPG", ""])
        _png(root / rows[-1][3], i)
    for i in range(3):
        rows.append(["candle", "test", "normal", f"candle/Data/Images/Normal/{10 + i:04d}.JPG", ""])
        _png(root / rows[-1][3], 10 + i)
        rows.append(["candle", "test", "anomaly", f"candle/Data/Images/Anomaly/{i:03d}.JPG",
                     f"candle/Data/Masks/Anomaly/{i:03d}.png"])
        _png(root / rows[-1][3], 50 + i)
        _mask(root / rows[-1][4])
    (root / "split_csv").mkdir(parents=True)
    with open(root / "split_csv/1cls.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return ["--category", "candle"]


def dagm(root):
    for part, flags in (("Train", [0] * 10 + [1]), ("Test", [0, 1, 0, 1, 0, 1])):
        lines = ["1"]
        for i, flag in enumerate(flags, start=1):
            _png(root / "Class1" / part / f"{i:04d}.PNG", i + (50 if part == "Test" else 0), mode="L")
            mask = ""
            if flag:
                mask = f"{i:04d}_label.PNG"
                _mask(root / "Class1" / part / "Label" / mask)
            lines.append(f"{i}\t{flag}\t{i:04d}.PNG\t0\t{mask}")
        (root / "Class1" / part / "Label").mkdir(parents=True, exist_ok=True)
        (root / "Class1" / part / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
    return ["--category", "Class1", "--channels", "1"]


def isic(root):
    header = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    for split, n in (("Training", 16), ("Test", 8)):
        rows = [header]
        for i in range(n):
            name = f"ISIC_{split[:2]}{i:05d}"
            _png(root / f"ISIC2018_Task3_{split}_Input" / f"{name}.jpg", i + (100 if split == "Test" else 0))
            diag = "NV" if i % 2 == 0 or split == "Training" and i < 12 else "MEL"
            rows.append([name] + ["1.0" if h == diag else "0.0" for h in header[1:]])
        gt = root / f"ISIC2018_Task3_{split}_GroundTruth"
        gt.mkdir(parents=True)
        with open(gt / f"ISIC2018_Task3_{split}_GroundTruth.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return ["--category", "NV"]


def cityscapes(root):
    for i in range(10):
        _png(root / "train/ID/aachen" / f"aachen_{i:06d}_000019_leftImg8bit.png", i)
    for i in range(3):
        _png(root / "test/ID/frankfurt" / f"frankfurt_{i:06d}_000019_leftImg8bit.png", 100 + i)
        _png(root / "test/OOD" / f"ood_{i:03d}.png", 200 + i)
    return []


def folder(root):
    for i in range(10):
        _png(root / "good" / f"g{i}.png", i)
    for i in range(3):
        _png(root / "bad" / f"b{i}.png", 100 + i)
        _mask(root / "masks" / f"b{i}.png")
    return ["--normal-dir", str(root / "good"), "--abnormal-dir", str(root / "bad"), "--mask-dir", str(root / "masks")]


def _cifar_batch(path, n, seed, labels_key, n_classes):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             labels_key: [int(v) for v in np.arange(n) % n_classes]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def cifar10(root):
    for i in range(1, 6):
        _cifar_batch(root / "cifar-10-batches-py" / f"data_batch_{i}", 20, i, b"labels", 10)
    _cifar_batch(root / "cifar-10-batches-py" / "test_batch", 20, 9, b"labels", 10)
    return ["--normal-class", "airplane"]


def cifar100(root):
    for name, n in (("train", 60), ("test", 40)):
        rng = np.random.default_rng(len(name))
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": [int(v) for v in np.arange(n) % 100], b"coarse_labels": [int(v) for v in np.arange(n) % 20]}
        (root / "cifar-100-python").mkdir(parents=True, exist_ok=True)
        with open(root / "cifar-100-python" / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return ["--normal-class", "4"]


def svhn(root):
    from scipy.io import savemat

    root.mkdir(parents=True)
    for name, n in (("train", 40), ("test", 20)):
        rng = np.random.default_rng(n)
        savemat(root / f"{name}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                             "y": (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)})
    return ["--normal-class", "1"]


def imagenet30(root):
    for split, n in (("one_class_train", 6), ("one_class_test", 2)):
        for c, cls in enumerate(("acorn", "airliner", "ambulance")):
            for i in range(n):
                _png(root / split / cls / f"{i}.JPEG", 10 * c + i + (100 if "test" in split else 0), side=20)
    return ["--normal-class", "airliner"]


def _idx(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def _idx_folder(root, train_names, test_names):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for (images, labels), n in zip((train_names, test_names), (30, 20)):
        (root / images).write_bytes(gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28)))))
        (root / labels).write_bytes(gzip.compress(_idx(np.arange(n) % 10)))


def mnist(root):
    _idx_folder(root, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    return ["--normal-class", "3"]


def fashion_mnist(root):
    _idx_folder(root, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    return ["--normal-class", "3"]


# the writers of every format read from the user's disk; built-in formats need none
WRITERS = {"mvtec": mvtec, "btad": btad, "visa": visa, "dagm": dagm, "isic": isic, "cityscapes": cityscapes, "folder": folder,
           "cifar10": cifar10, "cifar100": cifar100, "svhn": svhn, "imagenet30": imagenet30, "mnist": mnist,
           "fashion-mnist": fashion_mnist}
