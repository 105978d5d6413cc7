"""LeNet-5 as d2l 7.6 builds it: sigmoid activations and average pooling, for 28x28 inputs.

The notebook's layer summary at (1, 1, 28, 28) ends Conv2d (1, 6, 28, 28) ... Linear (1, 10);
the first Linear's 400 inputs (16 x 5 x 5) hold only for 28x28 images.
"""
from __future__ import annotations

from torch import nn

from harness.models.registry import register_model
from harness.models.size import Net, model_size


@register_model
def lenet(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 (d2l 7.6): Conv(6, k5, p2)-Sigmoid-AvgPool(2, 2)-Conv(16, k5)-Sigmoid-AvgPool(2, 2)
    -Flatten-Linear(120)-Sigmoid-Linear(84)-Sigmoid-Linear(num_classes). Lazy layers, as the book:
    the input channels are whatever the first batch has."""
    return nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.LazyLinear(120), nn.Sigmoid(),
        nn.LazyLinear(84), nn.Sigmoid(),
        nn.LazyLinear(num_classes))


@model_size(lenet, depth=lambda: 5)
def _lenet_size(net: Net, num_classes: int = 10) -> None:
    net.conv(6, 5, padding=2), net.act(), net.pool(2, 2)
    net.conv(16, 5), net.act(), net.pool(2, 2)
    net.flatten()
    net.linear(120), net.act(), net.linear(84), net.act(), net.linear(num_classes)
