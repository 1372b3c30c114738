"""Quantization configs: how each tensor of each layer is quantized.

    QuantSpec    one tensor: bits, symmetric or not, per-channel or not, observer, fake-quant kind
    QConfig      one layer: QuantSpec for its weight, its input and (optionally) its output
    QuantConfig  the model: a default QConfig plus per-layer overrides by module name,
                 so mixed bit-widths per layer are one dictionary entry each

    config = QuantConfig.uniform(bits=4, fake_quant="lsq")
    config = QuantConfig(layers={"1": QConfig(weight=QuantSpec(bits=2, symmetric=True, per_channel=True)),
                                 "5": None})          # None: leave layer "5" in float
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from numbers import Integral

from tinyq.formats.rounding import check_bits, integer_range
from tinyq.quant.observers import OBSERVERS

__all__ = ["QuantSpec", "QConfig", "QuantConfig", "FAKE_QUANT_KINDS", "default_weight_spec", "default_input_spec"]

FAKE_QUANT_KINDS = ("ste", "lsq", "pact")


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized: q = clamp(round(x/scale) + zero_point, qmin, qmax) with these choices.

    bits          2..16
    symmetric     zero_point fixed (0 when signed) and scale from max|x|; else asymmetric from [min, max]
    signed        integer codes signed (int8) or unsigned (uint8); None: signed = symmetric
    per_channel   one scale per slice along `axis` (weights: axis 0 = output channels)
    narrow_range  drop the lowest code (int8 → [-127, 127]; 2-bit symmetric becomes ternary {-1, 0, 1})
    observer      how the range is chosen: minmax, moving_average, percentile, mse, entropy
    fake_quant    how training passes through rounding: ste (observer ranges), lsq (learned step),
                  pact (learned clip, unsigned activations only). PTQ always uses the observer.
    observer_kwargs  extra options for the observer, e.g. {"percentile": 99.9}
    """

    bits: int = 8
    symmetric: bool = False
    signed: bool | None = None
    per_channel: bool = False
    axis: int = 0
    narrow_range: bool = False
    observer: str = "minmax"
    fake_quant: str = "ste"
    observer_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        check_bits(self.bits, "QuantSpec")
        if self.observer not in OBSERVERS:
            raise ValueError(f"QuantSpec: unknown observer {self.observer!r}; "
                             f"known observers: {', '.join(sorted(OBSERVERS))}")
        if self.fake_quant not in FAKE_QUANT_KINDS:
            raise ValueError(f"QuantSpec: unknown fake_quant {self.fake_quant!r}; "
                             f"expected one of {', '.join(FAKE_QUANT_KINDS)}")
        if not isinstance(self.axis, Integral) or isinstance(self.axis, bool):
            raise ValueError(f"QuantSpec expects an int axis, got {self.axis!r}")
        if not isinstance(self.observer_kwargs, dict):
            raise TypeError(f"QuantSpec expects observer_kwargs a dict, got {type(self.observer_kwargs).__name__}")
        if self.fake_quant == "pact" and (self.is_signed or self.per_channel):
            raise ValueError("QuantSpec: pact quantizes unsigned per-tensor activations on [0, alpha]; "
                             "use symmetric=False, signed=False, per_channel=False (or another fake_quant)")
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "axis", int(self.axis))

    @property
    def is_signed(self) -> bool:
        return self.symmetric if self.signed is None else bool(self.signed)

    @property
    def qmin(self) -> int:
        return integer_range(self.bits, self.is_signed, self.narrow_range)[0]

    @property
    def qmax(self) -> int:
        return integer_range(self.bits, self.is_signed, self.narrow_range)[1]

    def replace(self, **changes) -> "QuantSpec":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        scheme = "sym" if self.symmetric else "asym"
        granularity = f"per-channel(axis={self.axis})" if self.per_channel else "per-tensor"
        sign = "int" if self.is_signed else "uint"
        return f"{sign}{self.bits} {scheme} {granularity} {self.observer}/{self.fake_quant}"


def default_weight_spec(bits: int = 8, **changes) -> QuantSpec:
    """Weights: signed, symmetric, narrow range, per output channel (axis 0), min-max."""
    return QuantSpec(bits=bits, symmetric=True, per_channel=True, axis=0, narrow_range=True).replace(**changes)


def default_input_spec(bits: int = 8, **changes) -> QuantSpec:
    """Activations: unsigned, asymmetric, per-tensor, min-max."""
    return QuantSpec(bits=bits, symmetric=False, per_channel=False).replace(**changes)


@dataclass(frozen=True)
class QConfig:
    """One layer's quantization: its weight, its input and its output; None leaves that tensor in float."""

    weight: QuantSpec | None = field(default_factory=default_weight_spec)
    input: QuantSpec | None = field(default_factory=default_input_spec)
    output: QuantSpec | None = None

    def __post_init__(self):
        for name in ("weight", "input", "output"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, QuantSpec):
                raise TypeError(f"QConfig.{name} expects a QuantSpec or None, got {type(value).__name__}")
        if self.weight is not None and self.weight.fake_quant == "pact":
            raise ValueError("QConfig: pact is for activations (unsigned, clipped at alpha), not for weights; "
                             "use fake_quant='ste' or 'lsq' for the weight")


_UNSET = object()


class QuantConfig:
    """default: the QConfig of every Linear/Conv2d (QConfig() when not given; None: layers not listed stay
    float); layers: {module name: QConfig, or None to keep that layer float}."""

    def __init__(self, default: QConfig | None = _UNSET, layers: dict | None = None):
        default = QConfig() if default is _UNSET else default
        if default is not None and not isinstance(default, QConfig):
            raise TypeError(f"QuantConfig expects default a QConfig or None, got {type(default).__name__}")
        layers = dict(layers or {})
        for name, qconfig in layers.items():
            if not isinstance(name, str):
                raise TypeError(f"QuantConfig layer names are strings (module names such as '0'), got {name!r}")
            if qconfig is not None and not isinstance(qconfig, QConfig):
                raise TypeError(f"QuantConfig.layers[{name!r}] expects a QConfig or None, "
                                f"got {type(qconfig).__name__}")
        self.default, self.layers = default, layers

    @classmethod
    def uniform(cls, bits: int = 8, *, weight_bits: int | None = None, input_bits: int | None = None,
                observer: str = "minmax", weight_observer: str = "minmax", fake_quant: str = "ste",
                weight_fake_quant: str | None = None, per_channel: bool = True, layers: dict | None = None,
                **input_changes) -> "QuantConfig":
        """Every layer: weights `weight_bits` (default bits) symmetric per-channel, inputs `input_bits` asymmetric."""
        weight_kind = weight_fake_quant or ("ste" if fake_quant == "pact" else fake_quant)
        weight = default_weight_spec(weight_bits or bits, per_channel=per_channel, observer=weight_observer,
                                     fake_quant=weight_kind)
        inputs = default_input_spec(input_bits or bits, observer=observer, fake_quant=fake_quant, **input_changes)
        return cls(QConfig(weight=weight, input=inputs), layers)

    def for_layer(self, name: str) -> QConfig | None:
        """The layer's override if it has one, else the default."""
        return self.layers[name] if name in self.layers else self.default

    def check_layer_names(self, names) -> None:
        """ValueError naming any override that is not one of the model's quantizable layers."""
        names = list(names)
        unknown = [n for n in self.layers if n not in names]
        if unknown:
            raise ValueError(f"QuantConfig overrides unknown layers {unknown}; the model's Linear/Conv2d layers "
                             f"are {names}")

    def __repr__(self) -> str:
        return f"QuantConfig(default={self.default}, layers={self.layers})"
