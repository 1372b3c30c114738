"""Quantization on top of tinyq.formats.affine, in torch.ao's vocabulary.

    observers    MinMax, MovingAverage, Percentile, MSE, Entropy (KL) observers, PerChannelObservers,
                 OBSERVERS registry, make_observer
    fake_quant   the fake-quant Functions with their gradients: STE, LSQ / LSQ+ (learned step, zero point),
                 PACT (learned clip)
    quantizers   the quantizer Modules around them: FakeQuantize (observer-driven), LSQQuantizer,
                 PACTQuantizer; their grid and observer state are buffers (saved, strictly loaded)
    config       QuantSpec (one tensor), QConfig (one layer), QuantConfig (the model, per-layer overrides)
    fold         BatchNorm folding (fold_bn_params, fold_batchnorm)
    qat          QuantLinear / QuantConv2d, prepare_qat / convert, model_size_bytes
    ptq          prepare / calibrate / quantize_ptq (convert is qat's)
    qtensor      QTensor: integer codes + QParams, dequantize(), int4 packed storage
    int_modules  integer-only inference: IntLinear / IntConv2d / IntMaxPool2d, to_integer, stored_bits
    equivalence  the integer model vs its fake-quant model, layer by layer (`tinyq intcheck`)

Layering inside the package: observers, fake_quant -> quantizers -> config -> fold -> qat -> ptq;
qtensor -> int_modules -> equivalence.
"""
from tinyq.quant import config, fake_quant, fold, observers, ptq, qat, qtensor, quantizers
from tinyq.quant.config import QConfig, QuantConfig, QuantSpec
from tinyq.quant.fake_quant import fake_quantize_ste, lsq_fake_quantize, pact_fake_quantize
from tinyq.quant.fold import fold_batchnorm, fold_bn_params
from tinyq.quant.observers import OBSERVERS, PerChannelObservers, make_observer
from tinyq.quant.ptq import calibrate, prepare, quantize_ptq
from tinyq.quant.qat import convert, model_size_bytes, prepare_qat
from tinyq.quant.qtensor import QTensor
from tinyq.quant.quantizers import FakeQuantize, LSQQuantizer, PACTQuantizer

__all__ = ["observers", "fake_quant", "quantizers", "config", "fold", "qat", "ptq", "qtensor", "OBSERVERS",
           "make_observer", "PerChannelObservers", "QConfig", "QuantConfig", "QuantSpec", "QTensor", "prepare_qat",
           "prepare", "calibrate", "convert", "quantize_ptq", "fold_batchnorm", "fold_bn_params",
           "model_size_bytes", "FakeQuantize", "LSQQuantizer", "PACTQuantizer", "fake_quantize_ste",
           "lsq_fake_quantize", "pact_fake_quantize"]

# Old import paths, kept while chapters and callers move to the new modules (names listed in the issue-9
# note): the quantizer modules and PerChannelObservers used to live in fake_quant, make_quant_observer too.
for _name in ("FakeQuantize", "LSQQuantizer", "PACTQuantizer"):
    setattr(fake_quant, _name, getattr(quantizers, _name))
fake_quant.PerChannelObservers = observers.PerChannelObservers
fake_quant.make_quant_observer = observers.make_observer
del _name
