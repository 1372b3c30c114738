"""A small model zoo reused across the chapters and experiments."""
from __future__ import annotations

from tinyq import nn


def mlp(widths=(64, 128, 10), rng=None, batch_norm: bool = False) -> nn.Sequential:
    """Flatten, then Linear-ReLU blocks: widths[0] inputs -> ... -> widths[-1] outputs (no ReLU at the end)."""
    widths = tuple(widths)
    if len(widths) < 2:
        raise ValueError(f"mlp needs at least an input and an output width, got {widths}")
    layers = [nn.Flatten()]
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(w_in, w_out, rng=rng))
        if i < len(widths) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(w_out))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def lenet5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, rng=None) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling; 28x28 input padded to 32x32 by the first conv."""
    padding = 2 if image_size == 28 else 0
    side = ((image_size + 2 * padding - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=padding, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120, rng=rng), nn.ReLU(),
        nn.Linear(120, 84, rng=rng), nn.ReLU(),
        nn.Linear(84, num_classes, rng=rng),
    )


def convnet8(in_channels: int = 1, num_classes: int = 10, width: int = 32, rng=None) -> nn.Sequential:
    """A small all-conv net for 8x8 digits: conv-bn-relu blocks, strided downsampling, global average pool."""
    def block(c_in, c_out, stride):
        return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, rng=rng),
                nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(
        *block(in_channels, width, 1),          # 8x8
        *block(width, width, 1),
        *block(width, 2 * width, 2),            # 4x4
        *block(2 * width, 2 * width, 1),
        nn.Conv2d(2 * width, num_classes, 1, rng=rng),
        nn.GlobalAvgPool2d(),
    )


MODELS = {"mlp": mlp, "lenet": lenet5, "convnet": convnet8}


def for_images(name: str, image_shape: tuple, num_classes: int = 10, rng=None, mlp_hidden=(512,),
               convnet_width: int = 32) -> nn.Module:
    """The named model (mlp | lenet | convnet) sized for images of image_shape (C, H, W)."""
    channels, height, width = image_shape
    if name == "mlp":
        return mlp((channels * height * width, *mlp_hidden, num_classes), rng=rng)
    if name == "lenet":
        if (height, width) not in ((28, 28), (32, 32)):
            raise ValueError(f"lenet expects 28x28 or 32x32 images, got {height}x{width}; use --model convnet "
                             "or mlp for the 8x8 digits, or --dataset mnist/fashion")
        return lenet5(channels, num_classes, image_size=height, rng=rng)
    if name == "convnet":
        return convnet8(channels, num_classes, width=convnet_width, rng=rng)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def get_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
