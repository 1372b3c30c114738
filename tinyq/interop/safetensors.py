"""Weights in and out as safetensors: [8-byte header length n][n bytes of JSON header][raw little-endian data].

    save_safetensors(model.state_dict(), "model.safetensors")      # loadable by PyTorch and the HF tools
    state = load_safetensors("model.safetensors")                  # {name: ndarray}, no pickle anywhere
    load_weights(model, "model.safetensors")                       # names and shapes checked, keys named

The header maps each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data
that follows; format: huggingface.co/docs/safetensors). The `safetensors` package (numpy flavour)
reads and writes; tinyq checks the header first, so a truncated file or a corrupt header is a
ValueError that says what is wrong, not an error from deep inside the library.
tinyq's names and layouts follow PyTorch's (Linear weight (out, in), Conv2d (out, in/groups, kh, kw),
BatchNorm running_mean/running_var/num_batches_tracked), so a state dict moves both ways unchanged.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np

from tinyq.atomic import atomic_open
from tinyq.serialize import state_arrays

__all__ = ["load_safetensors", "load_weights", "read_header", "save_safetensors"]

MAX_HEADER_BYTES = 100 * 1024 * 1024                      # the format's own limit on the JSON header
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ModuleNotFoundError:
        raise RuntimeError("safetensors files need the safetensors package: pip install 'tinyq[interop]'") from None
    return safetensors.numpy


def _arrays(state) -> dict:
    arrays = state_arrays(state, "save_safetensors")
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise TypeError(f"save_safetensors expects numeric arrays, got dtype {array.dtype} for {key!r}")
        arrays[key] = np.require(array, requirements="C")     # (np.ascontiguousarray makes 0-d arrays 1-d)
    return arrays


def save_safetensors(state, path, metadata: dict | None = None) -> None:
    """Write {name: array} (a state dict, or a Module's) to path; the file appears whole or not at all."""
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("save_safetensors expects metadata {str: str} (the format stores only strings)")
    data = _safetensors_numpy().save(_arrays(state), metadata=metadata)
    with atomic_open(os.fspath(path), "wb") as f:
        f.write(data)


def read_header(data: bytes, source: str = "<bytes>") -> dict:
    """The JSON header of a safetensors file, checked against the file's length (ValueError if it is not)."""
    if len(data) < 8:
        raise ValueError(f"{source} is not a safetensors file: {len(data)} bytes, shorter than the 8-byte header "
                         "length (truncated?)")
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise ValueError(f"{source}: the header claims {length} bytes but the file has {len(data) - 8} after the "
                         "length field (truncated, or not a safetensors file)")
    try:
        header = json.loads(data[8:8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{source}: corrupt safetensors header (not JSON: {error})") from None
    if not isinstance(header, dict):
        raise ValueError(  # noqa: TRY004  (a damaged file is a value problem, not a wrong argument type)
            f"{source}: corrupt safetensors header (expected a JSON object, got {type(header).__name__})")
    available = len(data) - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in entry["data_offsets"])
            count = int(np.prod([int(d) for d in entry["shape"]], dtype=np.int64))
            size = DTYPE_BYTES[entry["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: corrupt safetensors header entry {name!r}: {entry!r}") from None
        if not 0 <= begin <= end or end - begin != count * size:
            raise ValueError(f"{source}: tensor {name!r} ({entry['dtype']} {entry['shape']}) has data offsets "
                             f"[{begin}, {end}] that do not fit its size {count * size} bytes (corrupt header)")
        if end > available:
            raise ValueError(f"{source}: tensor {name!r} ends at byte {end} of the data but the file holds "
                             f"{available} (truncated?)")
    return header


def load_safetensors(path) -> OrderedDict[str, np.ndarray]:
    """Read {name: ndarray} from a safetensors file (header checked first; clear ValueError if damaged)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"safetensors file {path!r} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    header = read_header(data, repr(path))
    library = _safetensors_numpy()
    try:
        arrays = library.load(data)
    except Exception as error:  # noqa: BLE001  (safetensors raises SafetensorError, a bare Exception subclass)
        raise ValueError(f"{path!r} is not a readable safetensors file: {error}") from None
    order = sorted((name for name in header if name != "__metadata__"), key=lambda n: header[n]["data_offsets"][0])
    return OrderedDict((name, arrays[name]) for name in order)


def load_weights(model, source, strict: bool = True):
    """Load a safetensors file (or a {name: array} dict) into model; mismatched names/shapes name the keys."""
    state = load_safetensors(source) if isinstance(source, (str, os.PathLike)) else dict(source)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: model {np.shape(expected[k])}, file {np.shape(state[k])}" for k in expected
             if k in state and np.shape(expected[k]) != np.shape(state[k])]
    if (strict and (missing or unexpected)) or wrong:
        raise ValueError(f"weights do not fit {type(model).__name__}: missing keys {missing}, unexpected keys "
                         f"{unexpected}, shape mismatches {wrong}")
    cast = {k: np.asarray(v).astype(np.asarray(expected[k]).dtype, copy=False) for k, v in state.items()
            if k in expected}
    model.load_state_dict(cast, strict=strict)
    return model
