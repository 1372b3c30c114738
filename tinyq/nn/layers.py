"""The layers: Linear, Conv2d, BatchNorm, pooling, activations, Flatten, Dropout, containers."""
from __future__ import annotations

import numpy as np

from tinyq import convolution, functional as F, init, normalization, ops
from tinyq.nn.module import Module, Parameter
from tinyq.tensor import Tensor


def _default_weights(shape, rng):
    """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5))."""
    return init.uniform(shape, 1.0 / np.sqrt(init.fans(shape)[0]), rng=rng)


class Linear(Module):
    """y = x W^T + b;  W: (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_default_weights((out_features, in_features), rng))
        bound = 1.0 / np.sqrt(in_features)
        self.register_parameter("bias", Parameter(init.uniform((out_features,), bound, rng=rng)) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input (N, {self.in_features}), got {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """out = conv2d(x, W) + b;  W: (out_channels, in_channels / groups, KH, KW)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels {in_channels} and out_channels {out_channels} must be "
                             f"divisible by groups {groups}")
        kh, kw = convolution._pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding = convolution._pair(stride, "stride"), convolution._pair(padding, "padding")
        self.dilation, self.groups = convolution._pair(dilation, "dilation"), groups
        shape = (out_channels, in_channels // groups, kh, kw)
        self.weight = Parameter(_default_weights(shape, rng))
        bound = 1.0 / np.sqrt(init.fans(shape)[0])
        self.register_parameter("bias", Parameter(init.uniform((out_channels,), bound, rng=rng)) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class _BatchNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta; batch statistics in training, running ones in eval.

    One fused graph node (tinyq.normalization.BatchNorm) rather than the composite of ~10 ops.

    running = (1 - momentum) running + momentum batch   (the running variance uses the unbiased batch variance)
    """

    _input_dims = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=np.float32))
            self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def _check(self, x):
        if x.ndim not in self._input_dims or x.shape[1] != self.num_features:
            dims = " or ".join(self._shapes)
            raise ValueError(f"{type(self).__name__} expects input {dims} with C={self.num_features}, got {x.shape}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        if self.training or not self.track_running_stats:       # the batch's statistics
            stats = {}
            out = normalization.batch_norm(x, self.weight, self.bias, eps=self.eps, batch_stats=stats)
            if self.training and self.track_running_stats:
                self.running_mean, self.running_var = normalization.running_statistics(
                    self.running_mean, self.running_var, stats, self.momentum)
                self.num_batches_tracked = self.num_batches_tracked + 1
            return out
        return normalization.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    _input_dims, _shapes = (2, 3), ("(N, C)", "(N, C, L)")


class BatchNorm2d(_BatchNorm):
    _input_dims, _shapes = (4,), ("(N, C, H, W)",)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return F.global_avg_pool2d(x)


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return ops.flatten(x, self.start_dim, self.end_dim)


class Dropout(Module):
    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


def _activation(name, fn, doc):
    def forward(self, x):
        return fn(x)
    return type(name, (Module,), {"forward": forward, "__doc__": doc})


ReLU = _activation("ReLU", ops.relu, "relu(x) = max(x, 0)")
Sigmoid = _activation("Sigmoid", ops.sigmoid, "sigmoid(x) = 1 / (1 + exp(-x))")
Tanh = _activation("Tanh", ops.tanh, "tanh(x)")
GELU = _activation("GELU", ops.gelu, "gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))")
Identity = _activation("Identity", lambda x: x, "identity(x) = x")


class LeakyReLU(Module):
    """leaky_relu(x) = x if x > 0 else slope x."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return ops.leaky_relu(x, self.negative_slope)


class Sequential(Module):
    """Calls its modules in order; named "0", "1", ... as in PyTorch."""

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential expects Modules, got {type(module).__name__} at position {i}")
            setattr(self, str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index):
        if isinstance(index, slice):                   # keeps the names, as PyTorch does: seq[2:] has "2", "3", ...
            part = Sequential()
            for name in list(self._modules)[index]:
                setattr(part, name, self._modules[name])
            return part
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
