"""VGG as d2l 8.2 builds it: a family of networks given by `arch`, a list of
(num_convs, out_channels) blocks, each block 3x3 convolutions and a 2x2 max-pool.

Five blocks halve the image five times, so the height and width must be at least 32 (224 in the
book; any multiple of 32 keeps every pooling exact). The first Linear's input size follows from
the image size, fixed when the model is materialised.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from harness.core.errors import UserError
from harness.models.registry import register_model
from harness.models.size import Net, model_size

# The book's VGG-11 (8.2, printed summary) and the 8x narrower one it trains on Fashion-MNIST.
VGG11_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
VGG_SMALL_ARCH = ((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))


def vgg_block(num_convs: int, out_channels: int) -> nn.Sequential:
    """The book's VGG block: num_convs x (3x3 conv, padding 1, ReLU), then 2x2 max-pool stride 2."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.LazyConv2d(out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def _positive_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _checked_arch(arch: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """arch as a tuple of (num_convs, out_channels) pairs of positive ints (YAML gives lists)."""
    try:
        pairs = tuple(tuple(pair) for pair in arch)
    except TypeError:
        pairs = ()
    if not pairs or not all(len(p) == 2 and all(map(_positive_int, p)) for p in pairs):
        raise UserError(f"model 'vgg': arch must be a non-empty list of [num_convs, out_channels] "
                        f"pairs of positive integers, e.g. {[list(p) for p in VGG_SMALL_ARCH]}; "
                        f"got {arch!r}")
    return pairs  # type: ignore[return-value]


@register_model
def vgg(num_classes: int = 10, arch: Sequence[Sequence[int]] = VGG_SMALL_ARCH) -> nn.Sequential:
    """VGG (d2l 8.2): the blocks of `arch`, then Flatten-Linear(4096)-ReLU-Dropout(0.5)
    -Linear(4096)-ReLU-Dropout(0.5)-Linear(num_classes). The default arch is the small one the
    notebook trains at 224x224; pass VGG11_ARCH for the book's full VGG-11."""
    blocks = [vgg_block(num_convs, out_channels) for num_convs, out_channels in _checked_arch(arch)]
    return nn.Sequential(
        *blocks, nn.Flatten(),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
        nn.LazyLinear(num_classes))


@model_size(vgg, depth=lambda arch=VGG_SMALL_ARCH: sum(n for n, _ in _checked_arch(arch)) + 3)
def _vgg_size(net: Net, num_classes: int = 10, arch: Sequence[Sequence[int]] = VGG_SMALL_ARCH) -> None:
    for num_convs, out_channels in _checked_arch(arch):
        for _ in range(num_convs):
            net.conv(out_channels, 3, padding=1), net.act()
        net.pool(2, 2)
    net.flatten()
    for _ in range(2):
        net.linear(4096), net.act(), net.act()
    net.linear(num_classes)
