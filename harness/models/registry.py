"""The model registry: register a factory by name, build a registered model materialised and
initialised (harness.models re-exports all of it)."""
from __future__ import annotations

import difflib
import inspect
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
