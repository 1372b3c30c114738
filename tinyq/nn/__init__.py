"""Layers and models: Module, Parameter and the layer zoo."""
from tinyq.nn.layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout,  # noqa: F401
                             Flatten, GELU, GlobalAvgPool2d, Identity, LeakyReLU, Linear, MaxPool2d, ReLU,
                             Sequential, Sigmoid, Tanh)
from tinyq.nn.module import Module, Parameter  # noqa: F401
