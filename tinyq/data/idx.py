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


# deflate cannot expand data more than about 1032:1, so a gzip file of n bytes holds at most this much
MAX_GZIP_RATIO = 1032


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def read_idx_header(stream, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, big-endian dtype, header bytes) from the start of an open IDX stream."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(magic)} bytes, expected a 4-byte magic)")
    zero, type_code, ndim = magic[:2], magic[2], magic[3]
    if zero != b"\x00\x00" or type_code not in TYPE_CODES:
        raise ValueError(f"{path}: wrong IDX magic {magic.hex()} (expected 0000 + type code "
                         f"{'/'.join(f'{c:02x}' for c in TYPE_CODES)} + ndim)")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({4 + len(dims)} bytes, expected {4 + 4 * ndim} "
                         f"for {ndim} dims)")
    return struct.unpack(f">{ndim}I", dims), np.dtype(TYPE_CODES[type_code]), 4 + 4 * ndim


def read_idx(path) -> np.ndarray:
    """array = IDX file at path (raw or gzip) as a native-endian ndarray with the file's shape.

    Memory is bounded by what the header declares, and the declared size is checked against what the
    file can hold before anything is allocated: a gzip file of n bytes decompresses to at most
    1032 n bytes, a raw file holds exactly header + data.
    """
    path = Path(path)
    gzipped = _is_gzip(path)
    if not gzipped and path.suffix == ".gz":
        raise ValueError(f"{path}: name ends in .gz but the file is not gzip data")
    file_size = path.stat().st_size
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as stream:
            shape, dtype, header = read_idx_header(stream, path)
            count = 1
            for n in shape:            # Python ints: 2^96 elements is a number, not an overflow
                count *= n
            needed = count * dtype.itemsize
            can_hold = MAX_GZIP_RATIO * file_size if gzipped else file_size - header
            if needed > can_hold:
                what = f"a {file_size}-byte gzip file decompresses to at most {can_hold} bytes" if gzipped \
                    else f"the file is truncated: it holds {can_hold} bytes after the header"
                raise ValueError(f"{path}: IDX header declares shape {shape} of {dtype.name} = {count} elements "
                                 f"({needed} bytes), but {what}")
            data = stream.read(needed)
            if len(data) < needed:
                raise ValueError(f"{path}: IDX file truncated: shape {shape} of {dtype.name} needs "
                                 f"{header + needed} bytes, file has {header + len(data)}")
            if stream.read(1):
                raise ValueError(f"{path}: IDX file has trailing bytes after the {header + needed} bytes "
                                 f"that shape {shape} of {dtype.name} needs")
    except (OSError, EOFError, zlib.error) as error:
        if not gzipped:
            raise
        raise ValueError(f"{path}: corrupted gzip data ({error})") from None
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
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
