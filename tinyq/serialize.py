"""Checkpoints: a state dict saved as .npz (no pickles), written atomically."""
from __future__ import annotations

import os
import zipfile
from collections import OrderedDict

import numpy as np

from tinyq.atomic import atomic_open


def save(state: dict, path) -> None:
    """Write {name: ndarray} to `path` (.npz); the file appears whole or not at all."""
    path = os.fspath(path)
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"save expects string keys, got {type(key).__name__} {key!r}")
        array = value.data if hasattr(value, "data") and not isinstance(value, np.ndarray) else value
        array = np.asarray(array)
        if array.dtype == object:
            raise TypeError(f"save expects numeric arrays, got dtype object for {key!r}")
        arrays[key] = array
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path) -> "OrderedDict[str, np.ndarray]":
    """Read a state dict saved by `save`; a missing, truncated or corrupted file gives a clear ValueError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return OrderedDict((key, archive[key]) for key in archive.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise ValueError(f"checkpoint {path!r} is not a readable .npz state dict (truncated or corrupted?): "
                         f"{error}") from error
