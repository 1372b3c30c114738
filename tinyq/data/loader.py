"""Datasets and batching: ArrayDataset holds arrays, DataLoader cuts them into batches.

Batches are plain NumPy arrays (images float32, labels int64); the training
loop wraps them in tensors. Shuffling is driven by an explicit
np.random.Generator, so the same seed gives the same batches.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np


class Dataset:
    """A dataset is anything with len(ds) and ds[i] -> (x_i, y_i)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


class ArrayDataset(Dataset):
    """ds[i] = (x[i], y[i]) over two arrays with the same first dimension."""

    def __init__(self, x, y):
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim < 1 or y.ndim < 1:
            raise ValueError(f"ArrayDataset expects arrays with a sample axis, got x{x.shape}, y{y.shape}")
        if len(x) != len(y):
            raise ValueError(f"ArrayDataset expects x and y of the same length, got {len(x)} and {len(y)}")
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def __repr__(self) -> str:
        return f"ArrayDataset(x={self.x.shape} {self.x.dtype}, y={self.y.shape} {self.y.dtype})"


class DataLoader:
    """Batches of (x float32, y int64); with shuffle=True a fresh permutation from rng per epoch.

    transform, if given, maps each x batch to a new one (augmentation, e.g. data.RandomShift).
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = False,
                 rng: np.random.Generator | None = None, drop_last: bool = False,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None):
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader expects batch_size a positive int, got {batch_size!r}")
        if shuffle and not isinstance(rng, np.random.Generator):
            raise ValueError("DataLoader(shuffle=True) needs rng=np.random.Generator "
                             f"(e.g. np.random.default_rng(0)), got rng={rng!r}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"DataLoader expects rng a np.random.Generator, got {type(rng).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.rng = rng
        self.drop_last = drop_last
        self.transform = transform

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            index = order[start:start + self.batch_size]
            x, y = self._gather(index)
            x = np.asarray(x, dtype=np.float32)
            if self.transform is not None:
                x = np.asarray(self.transform(x), dtype=np.float32)
            yield x, np.asarray(y, dtype=np.int64)

    def _gather(self, index: np.ndarray):
        if isinstance(self.dataset, ArrayDataset):  # fast path: one fancy-index per array
            return self.dataset.x[index], self.dataset.y[index]
        items = [self.dataset[int(i)] for i in index]
        return np.stack([item[0] for item in items]), np.asarray([item[1] for item in items])


def normalize(x, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """x_hat = (x - mean) / std; per-channel mean/std broadcast over axis 1 of (N, C, ...)."""
    x = np.asarray(x, dtype=np.float32)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != std.shape or mean.ndim > 1:
        raise ValueError(f"normalize expects scalar or per-channel (C,) mean and std of one shape, "
                         f"got mean{mean.shape}, std{std.shape}")
    if np.any(std <= 0):
        raise ValueError(f"normalize expects std > 0, got {std.tolist()}")
    if mean.ndim == 1:
        if x.ndim < 2 or x.shape[1] != mean.shape[0]:
            raise ValueError(f"normalize with {mean.shape[0]} channels expects x (N, {mean.shape[0]}, ...), "
                             f"got {x.shape}")
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean, std = mean.reshape(shape), std.reshape(shape)
    return ((x - mean) / std).astype(np.float32)
