"""Quantization on top of tinyq.formats.affine.

    observers    MinMax, MovingAverage, Percentile, MSE, Entropy (KL) observers + OBSERVERS registry
    fake_quant   fake quantization with gradients: STE, LSQ (learned step), PACT (learned clip); modules
    config       QuantSpec (one tensor), QConfig (one layer), QuantConfig (the model, per-layer overrides)
    qat          prepare_qat / convert, QuantLinear / QuantConv2d, model_size_bytes
    ptq          fold_batchnorm, prepare / calibrate / convert, quantize_ptq
    qtensor      QTensor: integer codes + QParams, dequantize(), int4 packed storage
    int_modules  integer-only inference: IntLinear / IntConv2d / IntMaxPool2d, to_integer, stored_bits
    equivalence  the integer model vs its fake-quant model, layer by layer (`tinyq intcheck`)
"""
from tinyq.quant import config, fake_quant, observers, ptq, qat, qtensor
from tinyq.quant.config import QConfig, QuantConfig, QuantSpec
from tinyq.quant.observers import OBSERVERS, make_observer
from tinyq.quant.ptq import calibrate, fold_batchnorm, prepare, quantize_ptq
from tinyq.quant.qat import convert, model_size_bytes, prepare_qat
from tinyq.quant.qtensor import QTensor

__all__ = ["observers", "fake_quant", "config", "qat", "ptq", "qtensor", "OBSERVERS", "make_observer", "QConfig",
           "QuantConfig", "QuantSpec", "QTensor", "prepare_qat", "prepare", "calibrate", "convert", "quantize_ptq",
           "fold_batchnorm", "model_size_bytes"]
