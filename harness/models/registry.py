"""The model registry: register a factory by name, build a registered model materialised and
initialised (harness.models re-exports all of it)."""
from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from harness.core.errors import UserError
from harness.core.registry import Registry
from harness.models.summary import init_cnn

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register a model factory under its function name (timm's @register_model)."""
    return MODELS.register(fn.__name__, fn)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names in registration order, filtered by a shell wildcard ("res*")."""
    return MODELS.names(pattern)


def accepted_args(name: str) -> list[str]:
    """The model-specific arguments a model accepts (beyond num_classes), e.g. ['arch'] for vgg."""
    params = inspect.signature(MODELS.get(name)).parameters
    return [p for p in params if p != "num_classes"]


def _check_model_args(name: str, given: dict) -> None:
    """UserError naming the model and what it accepts, before anything is built."""
    accepted = accepted_args(name)
    unknown = [k for k in given if k not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1, cutoff=0.6)
        noun = "argument" if len(unknown) == 1 else "arguments"
        raise UserError(f"model {name!r} got unknown {noun} {', '.join(map(repr, unknown))} "
                        f"(accepted: {', '.join(accepted) or 'none'})"
                        + (f"; did you mean {close[0]!r}?" if close else ""))


def create_model(name: str, *, num_classes: int = 10, in_channels: int = 1,
                 input_size: Sequence[int] = (28, 28), **model_args: object) -> nn.Module:
    """Build the registered model `name`, fully materialised and initialised, in train mode.

    Lazy layers are materialised by one forward pass of a zero batch of shape
    (2, in_channels, *input_size) in eval mode under no_grad (zeros: no RNG is drawn for the
    input, and BatchNorm's running statistics are left untouched), then `init_cnn` sets Xavier
    weights. Every random draw comes from torch's global RNG, so two calls after the same
    `torch.manual_seed(s)` give bitwise-equal weights. Models whose classifier's input size
    follows from the image (LeNet, VGG) only take images of `input_size` afterwards.

    Raises UserError for an unknown model, unknown model_args, or an input the model cannot take.
    """
    factory = MODELS.get(name)
    _check_model_args(name, model_args)
    model = factory(num_classes=num_classes, **model_args)
    shape = (2, in_channels, *input_size)
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    except (RuntimeError, ValueError) as e:
        raise UserError(f"model {name!r} cannot take input of shape {shape}: {e}") from None
    model.train()
    model.apply(init_cnn)
    return model


FAST_PROBE_EAGER_BYTES = 2**30  # eager (non-lazy) layers initialised on the CPU by the fast probe


class ModelBuildError(Exception):
    """The model's factory raised: its arguments are wrong (the original exception is `cause`)."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class Probe:
    """What one batch does to a model, found without computing it (probe_model)."""

    activations: int  # elements of every leaf module's output for the whole batch (kept for backward)
    params: int  # parameters, materialised at this input size
    norm_values: int | None  # fewest values per channel a BatchNorm sees in training (None: no BatchNorm)


def probe_model(name: str, input_shape: Sequence[int], *, num_classes: int = 10,
                **model_args: object) -> Probe:
    """Build the registered model `name` with `model_args` and push a batch of `input_shape`
    (N, C, H, W) through it without computing anything, to find shape errors and sizes at once.

    1. The factory runs on the meta device (shapes, no storage; where it cannot, on the CPU): a
       failure is ModelBuildError.
    2. Fast path: the model on the CPU, a batch of zero images, lazy layers materialised without
       their initialisation (storage reserved but never touched): torch's C++ shape checks run, no
       arithmetic does, milliseconds for every model here.
    3. Where the fast path raises (an empty batch can trip code that a full one does not, e.g.
       `x.reshape(x.shape[0], -1)`; or its parameters cannot even be allocated), or where eager
       (non-lazy) layers over FAST_PROBE_EAGER_BYTES would be initialised on the CPU, the meta device
       decides: a training-mode forward of the whole batch (exact, but torch's meta kernels import
       sympy and torch._dynamo on first use: seconds). Its error is the model's error.
    """
    factory = MODELS.get(name)
    try:
        with torch.device("meta"):
            meta_model = factory(num_classes=num_classes, **model_args)
    except Exception:  # noqa: BLE001 - a factory may need real tensors (`.item()`): the CPU decides
        meta_model = None
    if meta_model is None:
        try:
            with torch.random.fork_rng(devices=[]):
                factory(num_classes=num_classes, **model_args)
        except Exception as e:  # noqa: BLE001 - whatever the factory raises, the arguments caused it
            raise ModelBuildError(e) from e
        return _empty_batch_probe(factory, num_classes, model_args, input_shape)
    eager = sum(p.numel() for p in meta_model.parameters() if not isinstance(p, nn.UninitializedParameter))
    if eager * 4 <= FAST_PROBE_EAGER_BYTES:
        try:
            return _empty_batch_probe(factory, num_classes, model_args, input_shape)
        except Exception:  # noqa: BLE001 - not trusted either way: the meta pass decides
            pass
    return _meta_probe(meta_model, input_shape)


def _count_leaf_outputs(model: nn.Module, batch: int) -> tuple[list[int], list[int]]:
    """Hooks that add each leaf module's output elements per image to the first list and each
    BatchNorm's values per channel (batch x H x W) to the second."""
    per_image: list[int] = []
    norm: list[int] = []

    def leaf(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() >= 1:
            per_image.append(math.prod(output.shape[1:]))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and inputs and isinstance(inputs[0], torch.Tensor):
            norm.append(batch * math.prod(inputs[0].shape[2:]))

    for module in model.modules():
        if next(module.children(), None) is None:
            module.register_forward_hook(leaf)
    return per_image, norm


def _empty_batch_probe(factory: ModelFactory, num_classes: int, model_args: dict,
                       input_shape: Sequence[int]) -> Probe:
    from torch.nn.modules.lazy import LazyModuleMixin

    with torch.random.fork_rng(devices=[]):  # eager layers initialise from the RNG: leave the caller's
        model = factory(num_classes=num_classes, **model_args)
    for module in model.modules():
        if isinstance(module, LazyModuleMixin):
            module.reset_parameters = _no_initialisation  # this instance only: its storage is never read
    batch = int(input_shape[0])
    per_image, norm = _count_leaf_outputs(model, batch)
    model.eval()  # BatchNorm in training refuses an empty batch; its training rule is norm_values
    with torch.no_grad():
        model(torch.zeros((0, *input_shape[1:])))
    return Probe(batch * sum(per_image), sum(p.numel() for p in model.parameters()), min(norm, default=None))


def _no_initialisation() -> None:
    return None


def _meta_probe(model: nn.Module, input_shape: Sequence[int]) -> Probe:
    """A training-mode forward of the whole batch through the meta-device model: in training
    mode BatchNorm checks its values per channel itself."""
    batch = int(input_shape[0])
    per_image, _ = _count_leaf_outputs(model, batch)
    model.train()
    with torch.no_grad():
        model(torch.empty(tuple(input_shape), device="meta"))
    return Probe(batch * sum(per_image), sum(p.numel() for p in model.parameters()), None)
