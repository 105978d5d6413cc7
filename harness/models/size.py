"""A model's size from its arguments alone, before anything is built: layers, parameters and the
activations of one batch, by arithmetic over the layer shapes (no torch module, no tensor).

    size = estimate_size("vgg", (128, 1, 224, 224), arch=[[1, 64], [1, 128]])
    size.layers, size.params, size.activations        # 5, 1_661_068_042, 1_441_793_280

Why: building a model is the expensive part of checking it (a lazy convolution costs ~0.4 ms to
build and probe, so `arch: [[1000000, 16]]` would take minutes and gigabytes before any check saw
its size). Suite loading (harness.train.kind) bounds the layers (MAX_LAYERS) and the memory these
numbers imply first, and only then builds and probes the model (harness.models.registry.probe_model),
which finds what arithmetic does not (an input the network cannot take).

A registered model declares its size beside its factory with `@model_size(factory, depth=...)`:
`depth(**model_args)` counts its layers (cheap: no walk), and the decorated function walks a `Net`
through its layers in order. `params` equals what the built model has; `activations` counts every
leaf module's output for the whole batch, as probe_model does (tests/test_models.py holds both to
the built models). A model without a declared size (a plugin's) is bounded by its probe alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

# Layers with weights (convolutions and linear layers), the way a network's depth is counted
# (ResNet-18: 17 convolutions and 1 linear layer; 21 with its three 1x1 shortcut convolutions). The
# deepest registered here, resnext, has 29; ResNet-152 has 155. Building and probing costs ~0.4 ms a
# layer (vgg on a 2-core VM), so 1,000 keeps a suite's load under a second per model.
MAX_LAYERS = 1_000


@dataclass(frozen=True)
class Size:
    layers: int  # convolutions and linear layers
    params: int | None = None  # None: not walked (more than MAX_LAYERS layers)
    activations: int | None = None  # every leaf module's output elements for the whole batch


class Net:
    """A shape walker: each method is one leaf module applied to the running (C, H, W) per image,
    adding its parameters and its output's elements. Sizes that reach zero stay zero (the probe
    then names the layer the input is too small for)."""

    def __init__(self, channels: int, height: int, width: int):
        self.c, self.h, self.w = channels, height, width
        self.params = 0
        self.per_image = 0

    def _out(self) -> None:
        self.per_image += self.c * self.h * self.w

    def conv(self, out: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        self.params += (self.c // groups) * out * kernel * kernel + out
        self.c = out
        self.h, self.w = (max(0, (n + 2 * padding - kernel) // stride + 1) for n in (self.h, self.w))
        self._out()

    def pool(self, kernel: int, stride: int, padding: int = 0) -> None:
        self.h, self.w = (max(0, (n + 2 * padding - kernel) // stride + 1) for n in (self.h, self.w))
        self._out()

    def norm(self) -> None:  # BatchNorm2d: a weight and a bias per channel (running stats are buffers)
        self.params += 2 * self.c
        self._out()

    def act(self) -> None:  # an activation or dropout module: same shape
        self._out()

    def global_pool(self) -> None:  # AdaptiveAvgPool2d((1, 1))
        self.h = self.w = 1
        self._out()

    def flatten(self) -> None:
        self.c, self.h, self.w = self.c * self.h * self.w, 1, 1
        self._out()

    def linear(self, out: int) -> None:
        self.params += self.c * out + out
        self.c = out
        self._out()


SizeFn = Callable[..., None]  # (net, num_classes=..., **model_args) -> None, walking `net`
DepthFn = Callable[..., int]  # (**model_args) -> layers
SIZES: dict[str, tuple[DepthFn, SizeFn]] = {}


def model_size(factory: Callable, depth: DepthFn) -> Callable[[SizeFn], SizeFn]:
    """Declare the size of the registered model `factory` (see the module docstring)."""
    def register(fn: SizeFn) -> SizeFn:
        SIZES[factory.__name__] = (depth, fn)
        return fn
    return register


def estimate_size(name: str, input_shape: Sequence[int], *, num_classes: int = 10,
                  **model_args: object) -> Size | None:
    """The size of model `name` with `model_args` on batches of `input_shape` (N, C, H, W); None
    when the model declares none, or its arguments are not ones it can be built with (the factory
    then says why). More than MAX_LAYERS layers: only `layers` (nothing walked)."""
    if name not in SIZES:
        return None
    depth, walk = SIZES[name]
    try:
        layers = depth(**model_args)
        if layers > MAX_LAYERS:
            return Size(layers)
        batch, channels, height, width = (int(n) for n in input_shape)
        net = Net(channels, height, width)
        walk(net, num_classes=num_classes, **model_args)
    except Exception:  # noqa: BLE001 - bad arguments: the factory's own check reports them
        return None
    return Size(layers, net.params, batch * net.per_image)


def training_bytes(size: Size, input_shape: Sequence[int], bytes_per_value: int = 4) -> int:
    """A training step's memory: the activations kept for backward, the batch, weights and gradients."""
    return bytes_per_value * (size.activations + math.prod(input_shape) + 2 * size.params)
