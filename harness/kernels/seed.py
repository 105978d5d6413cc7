"""The book's own functions from d2l ch. 7.2-7.5, under the book's names and signatures.

They are kept as the book wrote them (Python loops and all) so that the seed notebook's printed
outputs can be reproduced exactly, and so that the families' `loop` variants have a source to be
faithful to. One deliberate fix everywhere: the output is allocated with `dtype=X.dtype,
device=X.device`, where the book's `torch.zeros(...)` gives float32 on the CPU whatever X is.
"""
from __future__ import annotations

import torch


def corr2d(X, K):
    """2-D cross-correlation of X (h, w) with K (kh, kw), no padding, stride 1 (book 7.2)."""
    h, w = K.shape
    # Fix: the book's zeros are float32/CPU; keep X's dtype and device instead.
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=X.dtype, device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


def corr2d_multi_in(X, K):
    """Sum over input channels of per-channel corr2d: X (ci, h, w), K (ci, kh, kw) (book 7.4).

    The book calls d2l.corr2d; this module's corr2d is the same code without the d2l dependency.
    """
    return sum(corr2d(x, k) for x, k in zip(X, K))


def corr2d_multi_in_out(X, K):
    """One corr2d_multi_in per output channel: X (ci, h, w), K (co, ci, kh, kw) (book 7.4)."""
    return torch.stack([corr2d_multi_in(X, k) for k in K], 0)


def corr2d_multi_in_out_1x1(X, K):
    """A 1x1 convolution as one matrix multiplication: K (co, ci, 1, 1) (book 7.4)."""
    c_i, h, w = X.shape
    c_o = K.shape[0]
    X = X.reshape((c_i, h * w))
    K = K.reshape((c_o, c_i))
    Y = torch.matmul(K, X)  # matrix multiplication in fully connected layer
    return Y.reshape((c_o, h, w))


def pool2d(X, pool_size, mode='max'):
    """Max or average pooling of X (h, w), no padding, stride 1 (book 7.5)."""
    p_h, p_w = pool_size
    # Fix: the book's zeros are float32/CPU; keep X's dtype and device instead.
    Y = torch.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1), dtype=X.dtype, device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            if mode == 'max':
                Y[i, j] = X[i: i + p_h, j: j + p_w].max()
            elif mode == 'avg':
                Y[i, j] = X[i: i + p_h, j: j + p_w].mean()
    return Y
