"""Checkpoints: a state dict saved as .npz (no pickles), written atomically, read with bounded memory."""
from __future__ import annotations

import os
import zipfile
from collections import OrderedDict

import numpy as np

from tinyq.atomic import atomic_open

# deflate cannot expand data more than about 1032:1 (zlib technical details), so a member that
# claims more is lying about its size
MAX_DEFLATE_RATIO = 1032


def state_arrays(state: dict, caller: str) -> dict:
    """{name: ndarray} from a state dict whose values are arrays or Tensors; string keys, no object arrays."""
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"{caller} expects string keys, got {type(key).__name__} {key!r}")
        array = value.data if hasattr(value, "data") and not isinstance(value, np.ndarray) else value
        array = np.asarray(array)
        if array.dtype == object:
            raise TypeError(f"{caller} expects numeric arrays, got dtype {array.dtype} for {key!r}")
        arrays[key] = array
    return arrays


def save(state: dict, path) -> None:
    """Write {name: ndarray} to `path` (.npz); the file appears whole or not at all."""
    path = os.fspath(path)
    arrays = state_arrays(state, "save")
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def _check_member_sizes(path: str) -> None:
    """Each .npy member's declared shape x itemsize must fit the bytes the archive really holds:
    checked from the headers before anything is allocated (a header can claim 10^10 floats)."""
    file_size = os.path.getsize(path)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.compress_size > file_size:
                raise ValueError(f"member {info.filename!r} claims {info.compress_size} compressed bytes, "
                                 f"the file has {file_size}")
            limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED \
                else MAX_DEFLATE_RATIO * info.compress_size + 1024
            if info.file_size > limit:
                raise ValueError(f"member {info.filename!r} claims {info.file_size} bytes from "
                                 f"{info.compress_size} stored bytes")
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in readers:
                    raise ValueError(f"member {info.filename!r} is .npy version {version}, expected 1.0 or 2.0")
                shape, _, dtype = readers[version](member)
                header_size = member.tell()
            if dtype.hasobject:
                raise ValueError(f"member {info.filename!r} holds Python objects (a pickle); refused")
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
            if declared + header_size > info.file_size:
                raise ValueError(f"member {info.filename!r} declares shape {shape} of {dtype} "
                                 f"({declared} bytes) but holds {info.file_size - header_size} bytes")


def load(path) -> "OrderedDict[str, np.ndarray]":
    """Read a state dict saved by `save`; a missing, truncated, corrupted or lying file gives a clear ValueError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path!r} is a folder, expected an .npz file")
    try:
        _check_member_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            return OrderedDict((key, archive[key]) for key in archive.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, MemoryError) as error:
        raise ValueError(f"checkpoint {path!r} is not a readable .npz state dict (truncated or corrupted?): "
                         f"{error}") from error


def describe_state(state: dict, limit: int = 6) -> str:
    """A short account of a state dict: its weight shapes as layers, e.g. "Linear 64->512, Linear 512->10"."""
    layers = []
    for key, value in state.items():
        shape = np.shape(value)
        if not key.endswith("weight"):
            continue
        if len(shape) == 2:
            layers.append(f"Linear {shape[1]}->{shape[0]}")
        elif len(shape) == 4:
            layers.append(f"Conv2d {shape[1]}->{shape[0]} {shape[2]}x{shape[3]}")
        elif len(shape) == 1:
            layers.append(f"norm({shape[0]})")
    more = f", ... ({len(layers)} layers)" if len(layers) > limit else ""
    return (", ".join(layers[:limit]) + more) if layers else f"{len(state)} arrays, no layer weights"


def state_mismatch(expected: dict, state: dict) -> list[str]:
    """What keeps `state` from loading into a model whose state_dict() is `expected` (empty if it fits)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for key in expected:
        if key in state and np.shape(state[key]) != np.shape(expected[key]):
            problems.append(f"{key} has shape {tuple(np.shape(state[key]))}, the model needs "
                            f"{tuple(np.shape(expected[key]))}")
    return problems


def load_into(model, path, candidates: dict | None = None):
    """model.load_state_dict(load(path)), with a ValueError saying which keys/shapes differ and what model the
    checkpoint seems to hold (the first of `candidates` {description: model} whose state it fits)."""
    state = load(path)
    problems = state_mismatch(model.state_dict(), state)
    if problems:
        guesses = [name for name, other in (candidates or {}).items() if not state_mismatch(other.state_dict(), state)]
        holds = f"it seems to hold {guesses[0]}" if guesses else f"it holds {describe_state(state)}"
        raise ValueError(f"checkpoint {os.fspath(path)!r} does not fit {type(model).__name__} "
                         f"({describe_state(model.state_dict())}): " + "; ".join(problems) + f"; {holds}")
    model.load_state_dict(state)
    return model
