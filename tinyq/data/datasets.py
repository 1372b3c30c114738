"""The datasets tinyq trains on: bundled 8x8 digits (offline), MNIST and Fashion-MNIST (cached).

Every loader returns (images float32 (N, 1, H, W) in [0, 1], labels int64 (N,)).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .download import DownloadError, cache_dir, fetch_all, sha256_of
from .idx import read_idx
from .loader import ArrayDataset

DIGITS_FILE = "digits.npz"
DIGITS_SHA256 = "acb7719b64a18e388190b65f4c3c7b8190666ca5f6144d7a0a8195f4f94892eb"
SPLITS = ("train", "test")

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def digits_path(root=None) -> Path:
    """root/digits.npz; root defaults to the repository's datasets/ folder, then $TINYQ_DATA."""
    if root is not None:
        return Path(root) / DIGITS_FILE
    bundled = Path(__file__).resolve().parents[2] / "datasets" / DIGITS_FILE
    if bundled.is_file() or not os.environ.get("TINYQ_DATA"):
        return bundled
    return cache_dir() / DIGITS_FILE


def load_digits(split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) = bundled 8x8 digits: x float32 (N, 1, 8, 8) = pixels / 16 in [0, 1], y int64 (N,)."""
    _check_split(split)
    path = digits_path(root)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the 8x8 digits ship in the repository's datasets/ folder "
                                "(install tinyq with `pip install -e .` from a clone, or pass root=)")
    actual = sha256_of(path)
    if actual != DIGITS_SHA256:
        raise ValueError(f"{path} is corrupted: SHA-256 {actual}, expected {DIGITS_SHA256} "
                         "(restore it with `git checkout datasets/digits.npz` or regenerate it with "
                         "datasets/make_digits.py)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: cannot read split {split!r} ({error})") from None
    x = (images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    return x, labels.astype(np.int64)


# the content every MNIST-style file must have (MNIST and Fashion-MNIST alike): uint8, these shapes
IDX_SHAPES = {
    "train-images-idx3-ubyte": (60000, 28, 28), "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28), "t10k-labels-idx1-ubyte": (10000,),
}


def _local_array(folder: Path, filename: str, sha256: str, problems: list):
    """The array of filename from folder, or None. Accepted: the published .gz (SHA-256 equal), or a
    recompressed .gz / uncompressed IDX file whose decompressed content has the published shape and dtype
    (what differs is added to problems)."""
    gz, raw = folder / filename, folder / filename.removesuffix(".gz")
    if gz.is_file() and sha256_of(gz) == sha256:
        return read_idx(gz)
    stem = filename.removesuffix(".gz")
    for candidate in (gz, raw):
        if not candidate.is_file():
            continue
        try:
            array = read_idx(candidate)
        except ValueError as error:
            problems.append(f"{candidate} is not a usable IDX file: {error}")
            continue
        expected = IDX_SHAPES.get(stem)
        if array.dtype == np.uint8 and (expected is None or array.shape == expected):
            return array
        differs = "its gzip bytes differ from the published file's and " if candidate == gz else ""
        problems.append(f"{candidate}: {differs}its content is {array.dtype}{array.shape}, "
                        f"expected uint8{expected}")
    return None


def _load_idx_pair(name: str, files: dict, mirrors, split: str, root, opener) -> tuple[np.ndarray, np.ndarray]:
    """All four files are looked for (and fetched) at once, so a missing one is named in the first error."""
    _check_split(split)
    prefix = "train" if split == "train" else "t10k"
    folder = Path(root) if root is not None else cache_dir() / name
    arrays, problems, missing = {}, [], {}
    for filename, sha256 in files.items():
        if filename.startswith(prefix + "-"):
            arrays[filename] = _local_array(folder, filename, sha256, problems)
            if arrays[filename] is None:
                missing[filename] = sha256
        elif not ((folder / filename).is_file() or (folder / filename.removesuffix(".gz")).is_file()):
            missing[filename] = sha256
    if missing:
        try:
            paths = fetch_all(missing, mirrors, folder, opener=opener)
        except DownloadError as error:
            found = "".join(f"\n{problem}" for problem in problems)
            raise DownloadError(f"{error}\nEach file may also be there uncompressed (without .gz); "
                                f"a recompressed .gz is accepted when its content is right.{found}") from None
        arrays.update({f: read_idx(p) for f, p in paths.items() if f.startswith(prefix + "-")})
    images = arrays[f"{prefix}-images-idx3-ubyte.gz"]
    labels = arrays[f"{prefix}-labels-idx1-ubyte.gz"]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != np.uint8:
        raise ValueError(f"{name} {split}: expected uint8 images (N, H, W) and labels (N,), "
                         f"got {images.dtype}{images.shape} and {labels.dtype}{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{name} {split}: labels must be in 0..9, got {labels.min()}..{labels.max()}")
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return x, labels.astype(np.int64)


def load_mnist(split: str = "train", root=None, *, opener=None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) = MNIST: x float32 (N, 1, 28, 28) = pixels / 255, y int64; downloaded once into root."""
    return _load_idx_pair("mnist", MNIST_FILES, MNIST_MIRRORS, split, root, opener)


def load_fashion_mnist(split: str = "train", root=None, *, opener=None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) = Fashion-MNIST: x float32 (N, 1, 28, 28) = pixels / 255, y int64; downloaded once."""
    return _load_idx_pair("fashion", FASHION_FILES, FASHION_MIRRORS, split, root, opener)


LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion": load_fashion_mnist,
}


def get_dataset(name: str, split: str = "train", **kwargs) -> ArrayDataset:
    """ArrayDataset(x, y) of the named dataset's split; name in digits | mnist | fashion."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    return ArrayDataset(*LOADERS[name](split, **kwargs))
