"""Residual networks of d2l 8.6: the Residual and ResNeXt blocks, ResNet, and the registered
`resnet18` and `resnext` (ResNet-18's layout built from ResNeXt blocks).

Fixed where the seed's code does not run: its blocks call eager `nn.Conv2d(num_channels, ...)`
without in_channels (lazy convolutions here, as the book's own d2l code), its head is
`nn.Linear(num_classes)` (LazyLinear here), and its ResNet18 passes the stages to ResNet without
wrapping them in one `arch` tuple. Forward passes are shape-agnostic tensor code (no Python-side
shape logic), so torch.compile, channels_last and autocast all apply.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from harness.core.errors import UserError
from harness.models.registry import register_model
from harness.models.size import Net, model_size

Arch = Sequence[tuple[int, int]]  # (num_residuals, num_channels) per stage
RESNET18_ARCH: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (2, 256), (2, 512))


class Residual(nn.Module):
    """The book's residual block: 3x3 conv-BN-ReLU-3x3 conv-BN, plus the input (through a 1x1
    conv of stride `strides` when use_1x1conv, to match channels and size), then ReLU."""

    def __init__(self, num_channels: int, use_1x1conv: bool = False, strides: int = 1):
        super().__init__()
        self.conv1 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.relu(Y + X)  # out of place: the seed's `Y += X` is needless aliasing under autograd


class ResNeXtBlock(nn.Module):
    """The book's ResNeXt block: 1x1 conv to bot_channels = round(num_channels * bot_mul), a
    grouped 3x3 conv, a 1x1 conv back to num_channels (each with BN), plus the input (through a
    1x1 conv and BN when use_1x1conv), then ReLU.

    As in the seed and d2l's code, `groups` is the number of channels PER GROUP: the 3x3 conv has
    bot_channels // groups groups, so bot_channels must be a multiple of `groups`.
    """

    def __init__(self, num_channels: int, groups: int, bot_mul: float, use_1x1conv: bool = False,
                 strides: int = 1):
        super().__init__()
        bot_channels = int(round(num_channels * bot_mul))
        if bot_channels < groups or bot_channels % groups:
            raise ValueError(f"ResNeXtBlock: bot_channels {bot_channels} (num_channels {num_channels} "
                             f"x bot_mul {bot_mul}) is not a multiple of groups={groups} channels per group")
        self.conv1 = nn.LazyConv2d(bot_channels, kernel_size=1, stride=1)
        self.conv2 = nn.LazyConv2d(bot_channels, kernel_size=3, stride=strides, padding=1,
                                   groups=bot_channels // groups)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=1)
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()
        self.bn3 = nn.LazyBatchNorm2d()
        if use_1x1conv:
            self.conv4 = nn.LazyConv2d(num_channels, kernel_size=1, stride=strides)
            self.bn4 = nn.LazyBatchNorm2d()
        else:
            self.conv4 = self.bn4 = None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


BlockFn = Callable[..., nn.Module]  # (num_channels, use_1x1conv=, strides=) -> block


class ResNet(nn.Sequential):
    """The book's ResNet: stem `b1`, one stage `b2`, `b3`, ... per (num_residuals, num_channels) of
    `arch`, and head `last` (global average pool, Flatten, Linear(num_classes)).

    An nn.Sequential, so its top-level layers are the six rows the notebook's layer_summary
    prints for ResNet-18. `block` builds the residual blocks (default: `Residual`); ResNeXt passes
    a ResNeXtBlock with its groups and bottleneck fixed.
    """

    def __init__(self, arch: Arch, num_classes: int = 10, block: BlockFn = Residual):
        super().__init__()
        self.add_module("b1", self.stem())
        for i, (num_residuals, num_channels) in enumerate(arch):
            self.add_module(f"b{i + 2}", self.stage(block, num_residuals, num_channels,
                                                    first_block=(i == 0)))
        self.add_module("last", nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(num_classes)))

    @staticmethod
    def stem() -> nn.Sequential:
        """The book's b1: 7x7 conv, 64 channels, stride 2; BN; ReLU; 3x3 max-pool stride 2 (H/4, W/4)."""
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    @staticmethod
    def stage(block: BlockFn, num_residuals: int, num_channels: int,
              first_block: bool = False) -> nn.Sequential:
        """The book's `block`: num_residuals blocks; the first of every stage but the first halves
        H and W and changes the channels (1x1 conv on the shortcut)."""
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(block(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(block(num_channels))
        return nn.Sequential(*blk)


class ResNeXt(ResNet):
    """ResNet with ResNeXtBlocks of `groups` channels per group and bottleneck ratio `bot_mul`."""

    def __init__(self, arch: Arch, groups: int, bot_mul: float, num_classes: int = 10):
        super().__init__(arch, num_classes, block=partial(ResNeXtBlock, groups=groups, bot_mul=bot_mul))


@register_model
def resnet18(num_classes: int = 10) -> ResNet:
    """ResNet-18 (d2l 8.6): stem, four stages of two Residual blocks with 64, 128, 256, 512
    channels, head. At 96x96 the stages' outputs are 24, 24, 12, 6 and 3 pixels square."""
    return ResNet(RESNET18_ARCH, num_classes)


@register_model
def resnext(num_classes: int = 10, groups: int = 16, bot_mul: float = 1.0) -> ResNeXt:
    """ResNet-18's layout (stem, stages of 2 blocks with 64-128-256-512 channels, head) built
    from ResNeXtBlocks.

    Default: 16 channels per group and bot_mul 1, the book's `ResNeXtBlock(32, 16, 1)` example
    carried to every stage, so the grouped 3x3 convs have 4, 8, 16 and 32 groups (the last is the
    ResNeXt paper's cardinality 32). Why: it is the configuration the book shows, it keeps every
    block at its stage's width (no extra activation memory beyond the third conv), and it costs
    no more than ResNet-18: 1.70M parameters vs 11.18M and 0.15 vs 0.64 forward GFLOPs per 96x96
    image, while grouped and 1x1 convs run at a lower FLOP/s than dense 3x3 ones, so a training
    step takes about as long as ResNet-18's (a shared 2-core CPU, batch 16 at 96x96: 3.3 s vs
    2.5-3.6 s, noisy; not yet measured on a GPU). For the paper's "same FLOPs as the ResNet"
    comparison, `groups=32, bot_mul=4` gives 7.33M parameters and 0.70 GFLOPs. `groups` must
    divide every stage's bot_channels = round(num_channels * bot_mul).
    """
    _check_resnext(groups, bot_mul)
    return ResNeXt(RESNET18_ARCH, groups, bot_mul, num_classes)


def _check_resnext(groups: object, bot_mul: object) -> None:
    """resnext's arguments as the factory takes them: numbers (not booleans), groups dividing
    every stage's bottleneck width."""
    if not isinstance(groups, int) or isinstance(groups, bool) or not isinstance(bot_mul, (int, float)) \
            or isinstance(bot_mul, bool) or not 0 < bot_mul < math.inf:
        raise UserError(f"model 'resnext': groups must be a positive integer and bot_mul a positive number; "
                        f"got groups={groups!r}, bot_mul={bot_mul!r}")
    for _, num_channels in RESNET18_ARCH:
        bot_channels = int(round(num_channels * bot_mul))
        if groups < 1 or bot_channels < groups or bot_channels % groups:
            raise UserError(f"model 'resnext': groups={groups} (channels per group) must divide "
                            f"every stage's bottleneck width round(num_channels * bot_mul); with "
                            f"bot_mul={bot_mul} the {num_channels}-channel stage has {bot_channels}")


def _resnet_walk(net: Net, arch: Arch, block: Callable[..., None], num_classes: int) -> None:
    """ResNet's layers in order (ResNet.__init__, stem, stage): `block(net, channels, use_1x1conv,
    strides)` walks one block."""
    net.conv(64, 7, stride=2, padding=3), net.norm(), net.act(), net.pool(3, 2, padding=1)
    for i, (num_residuals, num_channels) in enumerate(arch):
        for j in range(num_residuals):
            shortcut = j == 0 and i != 0
            block(net, num_channels, shortcut, 2 if shortcut else 1)
    net.global_pool(), net.flatten(), net.linear(num_classes)


def _residual_walk(net: Net, num_channels: int, use_1x1conv: bool, strides: int) -> None:
    c, h, w = net.c, net.h, net.w
    net.conv(num_channels, 3, stride=strides, padding=1), net.norm()
    net.conv(num_channels, 3, padding=1), net.norm()
    if use_1x1conv:  # on the block's input: the parameters and output of conv3 (same shape as conv2's)
        out = (net.c, net.h, net.w)
        net.c, net.h, net.w = c, h, w
        net.conv(num_channels, 1, stride=strides)
        net.c, net.h, net.w = out


def _resnext_walk(net: Net, num_channels: int, use_1x1conv: bool, strides: int, *, groups: int,
                  bot_mul: float) -> None:
    c, h, w = net.c, net.h, net.w
    bot_channels = int(round(num_channels * bot_mul))
    net.conv(bot_channels, 1), net.norm()
    net.conv(bot_channels, 3, stride=strides, padding=1, groups=bot_channels // groups), net.norm()
    net.conv(num_channels, 1), net.norm()
    if use_1x1conv:
        out = (net.c, net.h, net.w)
        net.c, net.h, net.w = c, h, w
        net.conv(num_channels, 1, stride=strides), net.norm()
        net.c, net.h, net.w = out


def _blocks(arch: Arch, per_block: int, per_shortcut: int) -> int:
    return sum(n * per_block + (per_shortcut if i and n else 0) for i, (n, _) in enumerate(arch))


@model_size(resnet18, depth=lambda: 1 + _blocks(RESNET18_ARCH, 2, 1) + 1)
def _resnet18_size(net: Net, num_classes: int = 10) -> None:
    _resnet_walk(net, RESNET18_ARCH, _residual_walk, num_classes)


def _resnext_depth(groups: int = 16, bot_mul: float = 1.0) -> int:
    _check_resnext(groups, bot_mul)
    return 1 + _blocks(RESNET18_ARCH, 3, 1) + 1


@model_size(resnext, depth=_resnext_depth)
def _resnext_size(net: Net, num_classes: int = 10, groups: int = 16, bot_mul: float = 1.0) -> None:
    _resnet_walk(net, RESNET18_ARCH, partial(_resnext_walk, groups=groups, bot_mul=bot_mul), num_classes)
