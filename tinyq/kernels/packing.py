"""int4 packing: two 4-bit codes per byte, byte = (q[2i+1] & 0xF) << 4 | (q[2i] & 0xF) (low nibble first).

A 4-bit code stored in an int8 wastes half the byte; packing halves the storage. Signed codes
[−8, 7] are stored as their 4-bit two's complement (−1 → 0xF) and sign-extended on the way back;
unsigned codes [0, 15] as they are. An odd count gets a zero high nibble in the last byte, so
unpacking needs the count. This module imports only numpy.
"""
from __future__ import annotations

import numpy as np

__all__ = ["pack_int4", "unpack_int4"]


def pack_int4(codes, signed: bool = True) -> np.ndarray:
    """uint8 array of ceil(n / 2) bytes holding the flattened codes two per byte, low nibble first."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"pack_int4 expects integer codes, got dtype {codes.dtype}")
    lo, hi = (-8, 7) if signed else (0, 15)
    if codes.size and (codes.min() < lo or codes.max() > hi):
        raise ValueError(f"pack_int4 expects {'signed' if signed else 'unsigned'} 4-bit codes in [{lo}, {hi}], "
                         f"got values in [{codes.min()}, {codes.max()}]")
    ### BEGIN SOLUTION 8.4
    nibbles = (codes.reshape(-1).astype(np.int16) & 0xF).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)
    ### END SOLUTION


def unpack_int4(packed, count: int, signed: bool = True) -> np.ndarray:
    """The first `count` codes of pack_int4's bytes, as int8 (signed, sign-extended) or uint8 (1-d)."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise TypeError(f"unpack_int4 expects a 1-d uint8 array of packed bytes, got {packed.dtype} {packed.shape}")
    if not isinstance(count, (int, np.integer)) or not 0 <= count <= 2 * packed.size:
        raise ValueError(f"unpack_int4 expects count in [0, {2 * packed.size}] for {packed.size} bytes, got {count!r}")
    ### BEGIN SOLUTION 8.4
    nibbles = np.empty(2 * packed.size, dtype=np.int16)
    nibbles[0::2] = packed & 0xF
    nibbles[1::2] = packed >> 4
    nibbles = nibbles[:count]
    if signed:
        nibbles = np.where(nibbles >= 8, nibbles - 16, nibbles)     # sign-extend the 4-bit two's complement
        return nibbles.astype(np.int8)
    return nibbles.astype(np.uint8)
    ### END SOLUTION
