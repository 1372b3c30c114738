"""QTensor: integer codes q plus the QParams that give them meaning, x ≈ scale · (q − zero_point).

A QTensor is storage for inference, not a Tensor: it has no autograd and no
arithmetic of its own. `dequantize()` returns the float32 values it stands for;
`nbytes` counts the bytes it would take with its codes packed at `bits` each.
The integer-inference chapter builds its kernels on top of this.
"""
from __future__ import annotations

import math

import numpy as np

from tinyq.formats.affine import QParams, dequantize, quantize

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
    def nbytes(self) -> int:
        """ceil(size · bits / 8): the codes packed densely (two int4 per byte), without the qparams."""
        return math.ceil(self.values.size * self.qparams.bits / 8)

    def __repr__(self) -> str:
        kind = "per-channel" if self.qparams.per_channel else "per-tensor"
        sign = "int" if self.qparams.signed else "uint"
        return f"QTensor(shape={self.shape}, {sign}{self.bits} {kind})"
