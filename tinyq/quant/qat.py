"""Quantization-aware training: swap Linear/Conv2d for layers that fake-quantize, train, convert.

    y = fq_output( layer( fq_input(x), fq_weight(W) ) + b )

    qmodel = prepare_qat(model, QuantConfig.uniform(bits=4, fake_quant="lsq"))   # a new model
    ... train qmodel with any optimizer over qmodel.parameters() ...
    qsim = convert(qmodel)            # qparams frozen: the quantized-simulation model
    quantized_weights(qsim)           # {"0.weight": QTensor, ...}
    model_size_bytes(qsim)            # bytes actually stored (packed weights + qparams + int32 biases)

The same layers serve post-training quantization (tinyq.quant.ptq): there every quantizer is
an observer-driven FakeQuantize that only observes during calibration.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from tinyq import functional as F
from tinyq.nn import Conv2d, Linear, Module, Parameter
from tinyq.prune.masks import apply_mask
from tinyq.quant.config import QConfig, QuantConfig, QuantSpec
from tinyq.quant.fold import fold_batchnorm
from tinyq.quant.qtensor import QTensor
from tinyq.quant.quantizers import FakeQuantize, LSQQuantizer, PACTQuantizer

__all__ = ["QuantLinear", "QuantConv2d", "QUANTIZERS", "make_quantizer", "quantize_layers", "prepare_qat",
           "convert", "quantized_weights", "model_size_bytes", "regularization_loss", "set_observers",
           "set_fake_quant", "quantizable_layers"]

QUANTIZERS = (FakeQuantize, LSQQuantizer, PACTQuantizer)
TENSOR_ROLES = ("weight", "input", "output")


def make_quantizer(spec: QuantSpec, role: str, weight: np.ndarray | None = None, observe_only: bool = False,
                   pact_alpha_l2: float = 0.0) -> Module:
    """The quantizer module for one tensor: FakeQuantize (ste, or any kind when observe_only), LSQ or PACT.

    role "weight": the observer sees only the current weight (reset each call); an LSQ step starts from it.
    observe_only: PTQ calibration — an observer-driven FakeQuantize with fake quantization off.
    """
    if role not in TENSOR_ROLES:
        raise ValueError(f"make_quantizer expects role in {TENSOR_ROLES}, got {role!r}")
    axis = spec.axis if spec.per_channel else None
    channels = None
    if axis is not None and weight is not None and role == "weight":
        if not -weight.ndim <= axis < weight.ndim:
            raise ValueError(f"per-channel axis={axis} is out of range for a weight of shape {weight.shape}")
        channels = weight.shape[axis]
    if observe_only or spec.fake_quant == "ste":
        quantizer = FakeQuantize(spec.observer, bits=spec.bits, symmetric=spec.symmetric, signed=spec.is_signed,
                                 axis=axis, narrow_range=spec.narrow_range, reset_each_call=role == "weight",
                                 num_channels=channels, **spec.observer_kwargs)
        return quantizer.enable_fake_quant(not observe_only)
    if spec.fake_quant == "lsq":
        learn_zero_point = not spec.symmetric           # an asymmetric grid: LSQ+ learns its zero point too
        if role == "weight":
            return LSQQuantizer(spec.bits, spec.is_signed, spec.narrow_range, axis=axis, num_channels=channels,
                                activation=False, learn_zero_point=learn_zero_point).init_from(weight)
        if axis is not None:
            raise ValueError("LSQ for activations is per-tensor here; set per_channel=False in the input spec")
        return LSQQuantizer(spec.bits, spec.is_signed, spec.narrow_range, activation=True,
                            learn_zero_point=learn_zero_point)
    if role == "weight":
        raise ValueError("pact quantizes activations, not weights")
    return PACTQuantizer(spec.bits, alpha_l2=pact_alpha_l2)


class _QuantLayer(Module):
    """Shared by QuantLinear and QuantConv2d: weight/bias Parameters plus weight/input/output quantizers."""

    def _setup(self, layer, qconfig: QConfig, observe_only: bool, pact_alpha_l2: float):
        if not isinstance(qconfig, QConfig):
            raise TypeError(f"{type(self).__name__} expects a QConfig, got {type(qconfig).__name__}")
        self.qconfig = qconfig
        self.weight = Parameter(layer.weight.data.copy())
        self.register_parameter("bias", None if layer.bias is None else Parameter(layer.bias.data.copy()))
        for role in TENSOR_ROLES:
            spec = getattr(qconfig, role)
            quantizer = None if spec is None else make_quantizer(spec, role, self.weight.data, observe_only,
                                                                 pact_alpha_l2)
            setattr(self, f"{role}_quant", quantizer)

    @classmethod
    def from_float(cls, layer, qconfig: QConfig, **options) -> "_QuantLayer":
        """The quantized-training version of a float layer (its weight and bias copied)."""
        return cls(layer, qconfig, **options)

    def _layer(self, x, weight):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        if self.input_quant is not None:
            x = self.input_quant(x)
        weight = self.weight if self.weight_quant is None else self.weight_quant(self.weight)
        y = self._layer(x, weight)
        return y if self.output_quant is None else self.output_quant(y)

    def quantized_weight(self) -> QTensor:
        """The weight as integer codes + QParams (needs frozen or observed qparams)."""
        if self.weight_quant is None:
            raise RuntimeError("this layer's weight is not quantized (its QConfig has weight=None)")
        return QTensor.quantize(self.weight.data, self.weight_quant.qparams)


class QuantLinear(_QuantLayer):
    """y = fq(x) fq(W)^T + b."""

    def __init__(self, linear: Linear, qconfig: QConfig, observe_only: bool = False, pact_alpha_l2: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._setup(linear, qconfig, observe_only, pact_alpha_l2)

    def _layer(self, x, weight):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear expects input (N, {self.in_features}), got {x.shape}")
        return F.linear(x, weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class QuantConv2d(_QuantLayer):
    """out = conv2d(fq(x), fq(W)) + b."""

    def __init__(self, conv: Conv2d, qconfig: QConfig, observe_only: bool = False, pact_alpha_l2: float = 0.0):
        super().__init__()
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
            setattr(self, name, getattr(conv, name))
        self._setup(conv, qconfig, observe_only, pact_alpha_l2)

    def _layer(self, x, weight):
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"


_SWAPS = {Linear: QuantLinear, Conv2d: QuantConv2d}


def _quant_class(module: Module):
    """QuantLinear/QuantConv2d for a Linear/Conv2d, pruned or not (a pruned layer's class is a subclass
    made by tinyq.prune that records its `_unpruned_class`); None for anything else."""
    return _SWAPS.get(getattr(type(module), "_unpruned_class", type(module)))


def _swap(layer: Module, qconfig: QConfig, observe_only: bool, pact_alpha_l2: float) -> _QuantLayer:
    """The Quant* layer for `layer`; a pruned layer's masks move onto it, so it computes
    fq(W_orig ⊙ m): a pruned weight is exactly 0 before quantization, the zero code on a symmetric grid
    (0 is on every affine grid), and stays 0 while the quantized model trains."""
    quantized = _quant_class(layer)(layer, qconfig, observe_only, pact_alpha_l2)   # copies the masked weight
    for name in getattr(type(layer), "_pruned_names", ()):
        apply_mask(quantized, name, getattr(layer, name + "_mask"))
    return quantized


def quantizable_layers(model: Module) -> list:
    """Names of the Linear/Conv2d layers, pruned ones included (as named_modules names them), that a
    QuantConfig can address."""
    return [name for name, module in model.named_modules() if _quant_class(module) is not None]


def quantize_layers(model: Module, config: QuantConfig, observe_only: bool = False,
                    pact_alpha_l2: float = 0.0) -> Module:
    """A deep copy of model with every configured Linear/Conv2d replaced by its Quant* layer.

    A pruned layer (tinyq.prune) keeps its masks: the Quant* layer is pruned with the same masks."""
    if not isinstance(model, Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    if not isinstance(config, QuantConfig):
        raise TypeError(f"expected a QuantConfig, got {type(config).__name__}")
    names = quantizable_layers(model)
    config.check_layer_names(names)
    model = copy.deepcopy(model)
    if _quant_class(model) is not None:                # the model is a single layer
        qconfig = config.for_layer("")
        return model if qconfig is None else _swap(model, qconfig, observe_only, pact_alpha_l2)
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent._modules.items()):
            if _quant_class(child) is None:
                continue
            qconfig = config.for_layer(f"{parent_name}.{child_name}" if parent_name else child_name)
            if qconfig is not None:
                setattr(parent, child_name, _swap(child, qconfig, observe_only, pact_alpha_l2))
    return model


def prepare_qat(model: Module, config: QuantConfig | None = None, fold_bn: bool = True,
                pact_alpha_l2: float = 0.0) -> Module:
    """A new model whose Linear/Conv2d fake-quantize as configured (BatchNorm folded first), in train mode."""
    config = QuantConfig() if config is None else config
    source = fold_batchnorm(model) if fold_bn else model
    return quantize_layers(source, config, observe_only=False, pact_alpha_l2=pact_alpha_l2).train()


def _layers(model: Module):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _QuantLayer)]


def convert(model: Module) -> Module:
    """A copy with every quantizer frozen: the quantized-simulation model (eval mode).

    Observer-driven quantizers freeze their QParams into their scale/zero_point buffers (weight
    ranges from the final weights; input/output ranges from what the observers saw); LSQ and PACT
    keep their learned step / zero point / clip. The modules and their state-dict keys stay the
    same, so a converted model's state loads into a freshly prepared model of the same configuration.
    """
    model = copy.deepcopy(model)
    for name, layer in _layers(model):
        for role in TENSOR_ROLES:
            quantizer = getattr(layer, f"{role}_quant")
            if quantizer is None:
                continue
            try:
                if isinstance(quantizer, FakeQuantize):
                    if role == "weight" and quantizer.observer is not None:
                        quantizer.enable_observer(True)
                        quantizer.observer.reset()
                        quantizer(layer.weight.detach())     # observe the final weights
                    quantizer.freeze()
                else:
                    quantizer.qparams                        # noqa: B018  (raises if never initialised)
            except RuntimeError as error:
                raise RuntimeError(f"layer {name!r}: the {role} quantizer has no range yet ({error}); run "
                                   "calibrate(model, loader) or a training step before convert()") from None
    return model.eval()


def quantized_weights(model: Module) -> dict:
    """{"<layer>.weight": QTensor} for every quantized layer of a converted (or calibrated) model."""
    return {f"{name}.weight" if name else "weight": layer.quantized_weight()
            for name, layer in _layers(model) if layer.weight_quant is not None}


def set_observers(model: Module, enabled: bool) -> Module:
    """Turn every observer-driven FakeQuantize's observer on or off (e.g. freeze ranges late in QAT)."""
    for module in model.modules():
        if isinstance(module, FakeQuantize) and module.observer is not None:
            module.enable_observer(enabled)
    return model


def set_fake_quant(model: Module, enabled: bool) -> Module:
    """Turn fake quantization on or off in every FakeQuantize."""
    for module in model.modules():
        if isinstance(module, FakeQuantize):
            module.enable_fake_quant(enabled)
    return model


def regularization_loss(model: Module):
    """Σ λ·α² over the PACT quantizers (a Tensor), or 0.0 when there are none; add it to the training loss."""
    terms = [m.regularization() for m in model.modules() if isinstance(m, PACTQuantizer) and m.alpha_l2 > 0]
    total = 0.0
    for term in terms:
        total = term + total
    return total


def _weight_bits(weight: np.ndarray, spec: QuantSpec | None) -> int:
    """Bits to store one weight tensor: packed codes + one float32 scale and int32 zero point per channel."""
    if spec is None:
        return 32 * weight.size
    channels = weight.shape[spec.axis] if spec.per_channel else 1
    return weight.size * spec.bits + channels * (32 + 32)


def model_size_bytes(model: Module, config: QuantConfig | None = None) -> int:
    """ceil(Σ bits stored / 8): weights packed at their bit-width with their scales (float32) and zero
    points (int32), biases int32, each activation quantizer's scale + zero point, everything else float32.

    A Quant* layer counts by its own QConfig; a plain Linear/Conv2d by `config` (float32 if None).
    A quantized layer's pruning mask is not counted: its pruned weights are stored as zero codes.
    """
    total, seen = 0, set()
    for name, module in model.named_modules():
        if isinstance(module, QUANTIZERS):
            continue                                    # counted with their layer
        if isinstance(module, _QuantLayer):
            qconfig = module.qconfig
            activations = sum(q is not None for q in (module.input_quant, module.output_quant))
        elif _quant_class(module) is not None and config is not None:
            qconfig = config.for_layer(name)
            activations = 0 if qconfig is None else sum(s is not None for s in (qconfig.input, qconfig.output))
        else:
            qconfig, activations = None, 0
        if qconfig is not None:
            total += _weight_bits(module.weight.data, qconfig.weight)
            total += 0 if module.bias is None else 32 * module.bias.size
            total += activations * (32 + 32)
        else:
            total += sum(32 * p.size for p in module._parameters.values() if p is not None and id(p) not in seen)
            seen.update(id(p) for p in module._parameters.values() if p is not None)   # a tied weight counts once
        masks = {f"{n}_mask" for n in getattr(type(module), "_pruned_names", ())} if qconfig is not None else ()
        total += sum(32 * np.size(getattr(module, b)) for b in module._buffers if b not in masks   # zeros are codes
                     and getattr(module, b) is not None and np.asarray(getattr(module, b)).dtype.kind == "f")
    return math.ceil(total / 8)
