"""Family `corr2d`: single-channel 2-D cross-correlation, X (h, w) with K (kh, kw), with zero
padding and stride (book 7.2-7.3).

Variants: `loop` (the book's corr2d, extended), `vectorized` (unfold windows + einsum),
`native` (F.conv2d). Also holds the window geometry (output size, fit check) that the
multi-channel and pooling families share, so all three agree on what a valid case is.
"""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from harness.core.kinds import Int
from harness.kernels.base import Case, Family, Pair, randn, register_family

# Sizes are (height, width); YAML lists like [3, 3] validate into these tuples.
Size = tuple[Annotated[Int, Field(gt=0)], Annotated[Int, Field(gt=0)]]  # strict: true is not 1
Padding = tuple[Annotated[Int, Field(ge=0)], Annotated[Int, Field(ge=0)]]


def hw(p: Pair) -> str:
    return f"{p[0]}x{p[1]}"


def out_size(input: Pair, window: Pair, padding: Pair, stride: Pair) -> Pair:
    """Output (height, width) of a sliding window, as PyTorch computes it (floor, no ceil_mode)."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, p, s in zip(input, window, padding, stride))


def check_fits(what: str, window: Pair, input: Pair, padding: Pair) -> None:
    """A window larger than the padded input has no valid position: PyTorch raises at run time,
    we refuse the case when the experiment is loaded."""
    padded = (input[0] + 2 * padding[0], input[1] + 2 * padding[1])
    if window[0] > padded[0] or window[1] > padded[1]:
        raise ValueError(f"{what} {hw(window)} is larger than the padded input {hw(padded)}")


def window_suffix(padding: Pair, stride: Pair) -> str:
    """Label parts for non-default padding and stride only, so common labels stay short."""
    return (f" pad={hw(padding)}" if padding != (0, 0) else "") + (
        f" s={hw(stride)}" if stride != (1, 1) else ""
    )


class Corr2dCase(Case):
    input: Size
    kernel: Size
    padding: Padding = (0, 0)
    stride: Size = (1, 1)

    @model_validator(mode="after")
    def _kernel_fits(self):
        check_fits("kernel", self.kernel, self.input, self.padding)
        return self

    @property
    def output(self) -> Pair:
        return out_size(self.input, self.kernel, self.padding, self.stride)

    def flops(self) -> int:
        oh, ow = self.output
        return 2 * oh * ow * self.kernel[0] * self.kernel[1]

    def loop_iters(self) -> int:
        oh, ow = self.output
        return oh * ow

    def tensor_elements(self) -> int:
        oh, ow = self.output
        return self.input[0] * self.input[1] + self.kernel[0] * self.kernel[1] + oh * ow

    def label(self) -> str:
        return f"in={hw(self.input)} k={hw(self.kernel)}" + window_suffix(self.padding, self.stride)


def make_inputs(case: Corr2dCase, gen: torch.Generator, dtype: torch.dtype, device: torch.device):
    return randn(case.input, gen, dtype, device), randn(case.kernel, gen, dtype, device)


def reference(case: Corr2dCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    X, K = X.detach().double().cpu(), K.detach().double().cpu()
    return F.conv2d(X[None, None], K[None, None], stride=case.stride, padding=case.padding)[0, 0]


FAMILY = register_family(
    Family(
        name="corr2d",
        doc="single-channel 2-D cross-correlation X (h, w) * K (kh, kw), zero padding, stride",
        case=Corr2dCase,
        make_inputs=make_inputs,
        reference=reference,
    )
)


def corr2d_loop(X: torch.Tensor, K: torch.Tensor, padding: Pair, stride: Pair) -> torch.Tensor:
    """The book's corr2d with zero padding and stride; the channel families reuse it."""
    h, w = K.shape
    (ph, pw), (sh, sw) = padding, stride
    X = F.pad(X, (pw, pw, ph, ph))  # F.pad's order is last dim first: (left, right, top, bottom)
    Y = torch.zeros(((X.shape[0] - h) // sh + 1, (X.shape[1] - w) // sw + 1), dtype=X.dtype,
                    device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i * sh:i * sh + h, j * sw:j * sw + w] * K).sum()
    return Y


def windows(X: torch.Tensor, window: Pair, padding: Pair, stride: Pair, value: float = 0.0):
    """Views (..., oh, ow, kh, kw) of every window of the last two dims of X, after padding.

    unfold makes strided views, not copies: the only copy is the padding (skipped when zero)."""
    (kh, kw), (ph, pw), (sh, sw) = window, padding, stride
    if ph or pw:
        X = F.pad(X, (pw, pw, ph, ph), value=value)
    return X.unfold(-2, kh, sh).unfold(-2, kw, sw)


@FAMILY.variant("loop", python_loop=True)
def loop(case: Corr2dCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return corr2d_loop(X, K, case.padding, case.stride)


@FAMILY.variant("vectorized")
def vectorized(case: Corr2dCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ijab,ab->ij", windows(X, case.kernel, case.padding, case.stride), K)


@FAMILY.variant("native")
def native(case: Corr2dCase, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return F.conv2d(X[None, None], K[None, None], stride=case.stride, padding=case.padding)[0, 0]
