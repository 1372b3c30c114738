"""Quantization on top of tinyq.formats.affine: observers now; fake-quant (STE, LSQ, PACT), PTQ and QAT later.

    observers    MinMax, MovingAverage, Percentile, MSE, Entropy (KL) observers + OBSERVERS registry

Only modules that exist are imported here; fake_quant, ptq, qat (and qtensor, int_modules)
will be added to this list by the helper that writes them.
"""
from tinyq.quant import observers
from tinyq.quant.observers import OBSERVERS, make_observer

__all__ = ["observers", "OBSERVERS", "make_observer"]
