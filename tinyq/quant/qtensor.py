"""QTensor: integer codes q plus the QParams that give them meaning, x ≈ scale · (q − zero_point).

A QTensor is storage for inference, not a Tensor: it has no autograd and no
arithmetic of its own. `dequantize()` returns the float32 values it stands for;
`nbytes` counts the bytes its storage really takes: codes of up to 4 bits are packed two per byte
(`packed()`, `QTensor.from_packed`, tinyq.kernels.packing), 5..8-bit codes take a byte each and
9..16-bit codes two. The integer-inference chapter builds its kernels on top of this.
"""
from __future__ import annotations

import math

import numpy as np

from tinyq.formats.affine import QParams, dequantize, quantize
from tinyq.kernels.packing import pack_int4, unpack_int4

__all__ = ["QTensor"]


class QTensor:
    """values: integer ndarray of codes in [qmin, qmax]; qparams: the affine grid they live on."""

    __slots__ = ("values", "qparams")

    def __init__(self, values: np.ndarray, qparams: QParams):
        if not isinstance(qparams, QParams):
            raise TypeError(f"QTensor expects a QParams, got {type(qparams).__name__}")
        values = np.asarray(values)
        if values.dtype.kind not in "iu":
            raise TypeError(f"QTensor expects integer codes, got dtype {values.dtype} "
                            "(use QTensor.quantize(x, qparams) for float data)")
        if values.size and (values.min() < qparams.qmin or values.max() > qparams.qmax):
            raise ValueError(f"QTensor expects codes in [{qparams.qmin}, {qparams.qmax}] for "
                             f"{qparams.bits}-bit {'signed' if qparams.signed else 'unsigned'}, "
                             f"got values in [{values.min()}, {values.max()}]")
        if qparams.per_channel:
            qparams.broadcast(values.ndim)                  # raises if the axis does not exist
            if values.shape[qparams.axis] != qparams.scale.size:
                raise ValueError(f"QTensor expects {qparams.scale.size} channels along axis {qparams.axis}, "
                                 f"got shape {values.shape}")
        self.values = values.astype(qparams.dtype, copy=False)
        self.qparams = qparams

    @classmethod
    def quantize(cls, x, qparams: QParams) -> "QTensor":
        """q = clamp(round(x / scale) + zero_point, qmin, qmax)."""
        return cls(quantize(x, qparams), qparams)

    def dequantize(self) -> np.ndarray:
        """x = scale · (q − zero_point), float32."""
        return dequantize(self.values, self.qparams)

    @property
    def shape(self) -> tuple:
        return self.values.shape

    @property
    def bits(self) -> int:
        return self.qparams.bits

    @property
    def storage_bits(self) -> int:
        """Bits one code takes in storage: 4 (two per byte) up to 4 bits, else 8 · the dtype's size."""
        return 4 if self.qparams.bits <= 4 else 8 * self.values.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """ceil(size · storage_bits / 8): the bytes of `packed()`, without the qparams."""
        return math.ceil(self.values.size * self.storage_bits / 8)

    def packed(self) -> np.ndarray:
        """The stored bytes: pack_int4 of the codes (≤ 4 bits), else the codes themselves (flattened)."""
        if self.qparams.bits <= 4:
            return pack_int4(self.values, signed=self.qparams.signed)
        return self.values.reshape(-1).copy()

    @classmethod
    def from_packed(cls, packed: np.ndarray, shape: tuple, qparams: QParams) -> "QTensor":
        """The inverse of packed(): QTensor of `shape` from the stored bytes."""
        count = math.prod(shape)
        if qparams.bits <= 4:
            values = unpack_int4(packed, count, signed=qparams.signed)
        else:
            values = np.asarray(packed)
            if values.size != count:
                raise ValueError(f"QTensor.from_packed expects {count} codes for shape {tuple(shape)}, got {values.size}")
        return cls(values.reshape(shape), qparams)

    def __repr__(self) -> str:
        kind = "per-channel" if self.qparams.per_channel else "per-tensor"
        sign = "int" if self.qparams.signed else "uint"
        return f"QTensor(shape={self.shape}, {sign}{self.bits} {kind})"
