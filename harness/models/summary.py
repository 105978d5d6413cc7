"""Weight initialisation and per-layer summaries of the book's networks.

`init_cnn` is d2l's initialiser. `layer_summary` reproduces the notebook's `layer_summary`
printout as data (class name, output shape per top-level layer); `summary_table` adds parameter
counts and FLOPs per layer, for `python -m harness summary MODEL --input N,C,H,W`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.utils.flop_counter import FlopCounterMode


def init_cnn(module: nn.Module) -> None:
    """Xavier-uniform weights for Linear and Conv2d layers, as d2l's init_cnn (biases untouched).

    The exact-type test is the book's: a lazy layer that is not yet materialised is skipped, so
    apply this after a dry forward pass (as `create_model` does).
    """
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


def body(model: nn.Module) -> nn.Sequential:
    """The sequential body whose top-level layers a summary lists: the model itself if it is an
    nn.Sequential (every registered model), else its `net` attribute (the book's d2l classes)."""
    net = model if isinstance(model, nn.Sequential) else getattr(model, "net", None)
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"{type(model).__name__} has no sequential body (nn.Sequential or .net)")
    return net


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad for the duration (Dropout is the identity, BatchNorm uses and keeps
    its running statistics); the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """A random input on the model's device and dtype, from a private generator: the global RNG
    is untouched (lazy layers materialised by the forward pass still draw from it, as they would
    on any first forward)."""
    param = next((p for p in model.parameters() if not is_lazy(p)), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    X = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0))
    return X.to(device=device, dtype=dtype)


def layer_summary(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """[(class name, output shape), ...] for each top-level layer of the body, in eval mode under
    no_grad: the rows the book prints as "Conv2d output shape: torch.Size([1, 6, 28, 28])".
    Materialises lazy layers, as the book's version does."""
    rows = []
    with _evaluating(model):
        X = _example_input(model, input_shape)
        for layer in body(model):
            X = layer(X)
            rows.append((type(layer).__name__, tuple(X.shape)))
    return rows


def summary_table(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """One row per top-level layer of the body, then a totals row named "total".

    Row keys: `layer` (child name in the body), `type` (class name), `output_shape`, `params`
    (number of parameter elements) and `flops` (forward FLOPs for the batch in `input_shape`, as
    torch.utils.flop_counter.FlopCounterMode counts them: a multiply-add is 2; convolutions and
    matrix products only, pooling, activations and normalisation count 0). The totals row sums
    the layers; its `output_shape` is the model's output shape. Eval mode, under no_grad.
    """
    rows = []
    with _evaluating(model):
        X = _example_input(model, input_shape)
        for name, layer in body(model).named_children():
            with FlopCounterMode(display=False) as counter:
                X = layer(X)
            rows.append({"layer": name, "type": type(layer).__name__, "output_shape": tuple(X.shape),
                         # counted after the forward pass, which materialises lazy parameters
                         "params": sum(p.numel() for p in layer.parameters()),
                         "flops": int(counter.get_total_flops())})
    rows.append({"layer": "total", "type": "", "output_shape": rows[-1]["output_shape"] if rows else (),
                 "params": sum(r["params"] for r in rows), "flops": sum(r["flops"] for r in rows)})
    return rows
