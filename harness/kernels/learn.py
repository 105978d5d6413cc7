"""The book's 7.2 experiment: learn the 1x2 edge-detection kernel [[1, -1]] from the edge image
and its correlation, by plain gradient descent on a bias-free convolution.

    from harness.kernels import learn_edge_kernel
    learn_edge_kernel()["kernel"]  # about [1.05, -0.93], as the book
"""
from __future__ import annotations

import torch
from torch import nn

from harness.kernels.seed import corr2d


def learn_edge_kernel(lr: float = 3e-2, iterations: int = 10, seed: int = 0,
                      device: str | torch.device = "cpu") -> dict:
    """Returns {'losses': summed squared error of each iteration (before its update, as the book
    prints it), 'kernel': the two learned weights}. Deterministic for a given seed."""
    X = torch.ones((6, 8))
    X[:, 2:6] = 0
    K = torch.tensor([[1.0, -1.0]])
    Y = corr2d(X, K)

    # fork_rng: seed the initialisation without changing the caller's global RNG stream. The
    # weights are drawn on the CPU and then moved, so a seed means the same start on any device.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # the book's LazyConv2d(1, ...) infers in_channels=1 on its first call: same layer
        conv2d = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
    conv2d = conv2d.to(device)
    X, Y = X.reshape((1, 1, 6, 8)).to(device), Y.reshape((1, 1, 6, 7)).to(device)

    losses = []
    for _ in range(iterations):
        Y_hat = conv2d(X)
        l = (Y_hat - Y) ** 2
        conv2d.zero_grad()
        l.sum().backward()
        conv2d.weight.data[:] -= lr * conv2d.weight.grad
        losses.append(float(l.sum().detach()))  # a device sync per step: fine, this is not timed
    return {"losses": losses, "kernel": conv2d.weight.data.reshape(2).tolist()}
