"""The IDX file format (MNIST's): a 4-byte magic, big-endian uint32 dims, raw big-endian data.

magic = 0x00 0x00 <type code> <number of dims>; type codes 0x08 uint8, 0x09 int8,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Files may be gzipped.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from tinyq import atomic

TYPE_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CODE_OF_DTYPE = {np.dtype(v).newbyteorder("="): k for k, v in TYPE_CODES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def _raw_bytes(path: Path) -> bytes:
    blob = path.read_bytes()
    if blob[:2] != GZIP_MAGIC:
        if path.suffix == ".gz":
            raise ValueError(f"{path}: name ends in .gz but the file is not gzip data")
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: corrupted gzip data ({error})") from None


def read_idx(path) -> np.ndarray:
    """array = IDX file at path (raw or gzip) as a native-endian ndarray with the file's shape."""
    path = Path(path)
    data = _raw_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes, expected a 4-byte magic)")
    zero, type_code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or type_code not in TYPE_CODES:
        raise ValueError(f"{path}: wrong IDX magic {data[:4].hex()} (expected 0000 + type code "
                         f"{'/'.join(f'{c:02x}' for c in TYPE_CODES)} + ndim)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, expected {header} for {ndim} dims)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(TYPE_CODES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {kind}: shape {shape} of {dtype.name} needs {expected} bytes, "
                         f"file has {len(data)}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path, array) -> Path:
    """IDX file at path (gzipped when the name ends in .gz) = array; written via tmp + os.replace."""
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in CODE_OF_DTYPE:
        raise TypeError(f"write_idx supports {sorted(str(d) for d in CODE_OF_DTYPE)}, got {array.dtype}")
    if array.ndim > 255:
        raise ValueError(f"write_idx supports at most 255 dims, got {array.ndim}")
    header = bytes([0, 0, CODE_OF_DTYPE[native], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).tobytes()
    blob = header + body
    if path.suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)
    return atomic.write_bytes(path, blob)
