"""Families `corr2d_multi_in_out` and `conv1x1`: cross-correlation with several input and
output channels (book 7.4), X (ci, h, w) with K (co, ci, kh, kw).

`corr2d_multi_in_out` adds padding and stride; its `loop` variant is the book's
corr2d_multi_in_out built on the extended loop corr2d. `conv1x1` is the book's special case
that a 1x1 convolution is a matrix multiplication (corr2d_multi_in_out_1x1).
"""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from harness.kernels import seed
from harness.core.kinds import Int
from harness.kernels.base import Case, Family, randn, register_family
from harness.kernels.corr2d import Corr2dCase, Size, corr2d_loop, hw, windows

Channels = Annotated[Int, Field(gt=0)]


# ---- corr2d_multi_in_out -------------------------------------------------------------------

class MultiCase(Corr2dCase):
    """A corr2d case (input, kernel, padding, stride, same validation) with channel counts."""

    channels_in: Channels
    channels_out: Channels

    def flops(self) -> int:
        return self.channels_in * self.channels_out * super().flops()

    def loop_iters(self) -> int:
        # the book's loop runs one corr2d per (output, input) channel pair
        return self.channels_in * self.channels_out * super().loop_iters()

    def label(self) -> str:
        return f"ci={self.channels_in} co={self.channels_out} " + super().label()

    def tensor_elements(self) -> int:
        (h, w), (kh, kw), (oh, ow) = self.input, self.kernel, self.output
        ci, co = self.channels_in, self.channels_out
        return ci * h * w + co * ci * kh * kw + co * oh * ow


def make_multi_inputs(case: MultiCase, gen: torch.Generator, dtype: torch.dtype,
                      device: torch.device):
    ci, co = case.channels_in, case.channels_out
    return randn((ci, *case.input), gen, dtype, device), randn((co, ci, *case.kernel), gen, dtype,
                                                               device)


def multi_reference(case: MultiCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    X, K = X.detach().double().cpu(), K.detach().double().cpu()
    return F.conv2d(X[None], K, stride=case.stride, padding=case.padding)[0]


MULTI = register_family(
    Family(
        name="corr2d_multi_in_out",
        doc="multi-channel cross-correlation X (ci, h, w) * K (co, ci, kh, kw), padding, stride",
        case=MultiCase,
        make_inputs=make_multi_inputs,
        reference=multi_reference,
    )
)


@MULTI.variant("loop", python_loop=True)
def multi_loop(case: MultiCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    # the book's corr2d_multi_in(_out), with its corr2d swapped for the padded, strided one
    p, s = case.padding, case.stride
    return torch.stack([sum(corr2d_loop(x, k, p, s) for x, k in zip(X, k_o)) for k_o in K], 0)


@MULTI.variant("vectorized")
def multi_vectorized(case: MultiCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    # contracting (c, a, b) at once is im2col + one matmul inside einsum
    return torch.einsum("cijab,ocab->oij", windows(X, case.kernel, case.padding, case.stride), K)


@MULTI.variant("native")
def multi_native(case: MultiCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return F.conv2d(X[None], K, stride=case.stride, padding=case.padding)[0]


# ---- conv1x1 -------------------------------------------------------------------------------

class Conv1x1Case(Case):
    channels_in: Channels
    channels_out: Channels
    input: Size

    def flops(self) -> int:
        return 2 * self.channels_in * self.channels_out * self.input[0] * self.input[1]

    def loop_iters(self) -> int:
        return self.channels_in * self.channels_out * self.input[0] * self.input[1]

    def label(self) -> str:
        return f"ci={self.channels_in} co={self.channels_out} in={hw(self.input)}"

    def tensor_elements(self) -> int:
        ci, co, pixels = self.channels_in, self.channels_out, self.input[0] * self.input[1]
        return ci * pixels + co * ci + co * pixels


def make_1x1_inputs(case: Conv1x1Case, gen: torch.Generator, dtype: torch.dtype,
                    device: torch.device):
    ci, co = case.channels_in, case.channels_out
    return randn((ci, *case.input), gen, dtype, device), randn((co, ci, 1, 1), gen, dtype, device)


def conv1x1_reference(case: Conv1x1Case, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return F.conv2d(X.detach().double().cpu()[None], K.detach().double().cpu())[0]


CONV1X1 = register_family(
    Family(
        name="conv1x1",
        doc="1x1 convolution X (ci, h, w) * K (co, ci, 1, 1): a matrix multiplication",
        case=Conv1x1Case,
        make_inputs=make_1x1_inputs,
        reference=conv1x1_reference,
    )
)


@CONV1X1.variant("loop", python_loop=True)
def conv1x1_loop(case: Conv1x1Case, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return seed.corr2d_multi_in_out(X, K)


@CONV1X1.variant("matmul")
def conv1x1_matmul(case: Conv1x1Case, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return seed.corr2d_multi_in_out_1x1(X, K)


@CONV1X1.variant("native")
def conv1x1_native(case: Conv1x1Case, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return F.conv2d(X[None], K)[0]
