"""Family `pool2d`: max or average pooling of X (c, h, w) with padding and stride (book 7.5).

Semantics are PyTorch's defaults, so the `native` variant and the reference agree with the
others: max pooling pads with -inf (padding never wins), average pooling pads with zeros and
divides by the full window (count_include_pad=True), no ceil_mode.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from harness.core.kinds import Int
from harness.kernels.base import Case, Family, Pair, randn, register_family
from harness.kernels.corr2d import (Padding, Size, check_fits, hw, out_size, window_suffix,
                                    windows)


class PoolCase(Case):
    input: Size
    channels: Annotated[Int, Field(gt=0)] = 1
    pool: Size
    stride: Size | None = None  # None: stride = pool, as in PyTorch and the book's nn.MaxPool2d
    padding: Padding = (0, 0)
    mode: Literal["max", "avg"] = "max"

    @model_validator(mode="after")
    def _pool_fits(self):
        # PyTorch refuses more ("pad should be at most half of effective kernel size"); so do we
        if self.padding[0] > self.pool[0] // 2 or self.padding[1] > self.pool[1] // 2:
            raise ValueError(
                f"padding {hw(self.padding)} is more than half the pool {hw(self.pool)}"
            )
        check_fits("pool", self.pool, self.input, self.padding)
        return self

    @property
    def step(self) -> Pair:
        """The stride actually used."""
        return self.pool if self.stride is None else self.stride

    @property
    def output(self) -> Pair:
        return out_size(self.input, self.pool, self.padding, self.step)

    def flops(self) -> int:
        # one compare (max) or add (avg) per window element per output
        oh, ow = self.output
        return self.channels * oh * ow * self.pool[0] * self.pool[1]

    def loop_iters(self) -> int:
        oh, ow = self.output
        return self.channels * oh * ow

    def tensor_elements(self) -> int:
        oh, ow = self.output
        return self.channels * (self.input[0] * self.input[1] + oh * ow)

    def label(self) -> str:
        # the stride is shown only when it differs from the pool: stride=None and stride=pool
        # are the same computation and get the same label
        s = window_suffix(self.padding, (1, 1) if self.step == self.pool else self.step)
        c = f" c={self.channels}" if self.channels != 1 else ""
        m = f" mode={self.mode}" if self.mode != "max" else ""
        return f"in={hw(self.input)} pool={hw(self.pool)}{s}{c}{m}"


def make_inputs(case: PoolCase, gen: torch.Generator, dtype: torch.dtype, device: torch.device):
    return (randn((case.channels, *case.input), gen, dtype, device),)


def _torch_pool(case: PoolCase, X: torch.Tensor) -> torch.Tensor:
    pool = F.max_pool2d if case.mode == "max" else F.avg_pool2d
    return pool(X, case.pool, stride=case.step, padding=case.padding)


def reference(case: PoolCase, X: torch.Tensor) -> torch.Tensor:
    return _torch_pool(case, X.detach().double().cpu())


FAMILY = register_family(
    Family(
        name="pool2d",
        doc="max/avg pooling of X (c, h, w), padding and stride as PyTorch's defaults",
        case=PoolCase,
        make_inputs=make_inputs,
        reference=reference,
    )
)


def _pad_value(mode: str) -> float:
    # -inf is the identity of max; zero padding plus a full-window mean is count_include_pad=True
    return float("-inf") if mode == "max" else 0.0


@FAMILY.variant("loop", python_loop=True)
def loop(case: PoolCase, X: torch.Tensor) -> torch.Tensor:
    """The book's pool2d, per channel, over a padded input and with a stride."""
    (p_h, p_w), (s_h, s_w), (ph, pw) = case.pool, case.step, case.padding
    X = F.pad(X, (pw, pw, ph, ph), value=_pad_value(case.mode))
    oh, ow = case.output
    Y = torch.zeros((X.shape[0], oh, ow), dtype=X.dtype, device=X.device)
    for c in range(Y.shape[0]):
        for i in range(oh):
            for j in range(ow):
                window = X[c, i * s_h: i * s_h + p_h, j * s_w: j * s_w + p_w]
                if case.mode == 'max':
                    Y[c, i, j] = window.max()
                elif case.mode == 'avg':
                    Y[c, i, j] = window.mean()
    return Y


@FAMILY.variant("vectorized")
def vectorized(case: PoolCase, X: torch.Tensor) -> torch.Tensor:
    w = windows(X, case.pool, case.padding, case.step, value=_pad_value(case.mode))
    return w.amax(dim=(-2, -1)) if case.mode == "max" else w.mean(dim=(-2, -1))


@FAMILY.variant("native")
def native(case: PoolCase, X: torch.Tensor) -> torch.Tensor:
    return _torch_pool(case, X)
