"""Seeds, determinism modes and fingerprints.

strict (default): every RNG seeded, deterministic algorithms enforced, cuDNN deterministic and
not benchmarking, TF32 off, CUBLAS_WORKSPACE_CONFIG set before CUDA starts; under data
parallelism the backend settings that decide the gradient all-reduce's order are recorded too. fast: the same seeds,
but the speed options are allowed. `configure` returns what is actually in force, to be recorded.
"""
from __future__ import annotations

import hashlib
import os
import random
from typing import Iterable

MODES = ("strict", "fast")


def prepare_process() -> None:
    """Call before CUDA is initialised: cuBLAS reads this once, at context creation."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def configure(mode: str) -> dict:
    """Put torch into `mode` and return the settings in force (logged with every result)."""
    import torch

    if mode not in MODES:
        raise ValueError(f"unknown determinism mode {mode!r} (known: {', '.join(MODES)})")
    strict = mode == "strict"
    torch.use_deterministic_algorithms(strict)
    torch.backends.cudnn.deterministic = strict
    torch.backends.cudnn.benchmark = False  # fast mode turns it on per experiment, explicitly
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from harness.core.distributed import reduction_settings

    return {
        "determinism": mode,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32": torch.backends.cuda.matmul.allow_tf32,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
    } | (reduction_settings() if strict else {})  # data-parallel: what decides the gradient sums' order


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (same on every machine and Python process)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def fingerprint(tensors: Iterable, trace: Iterable[float] = ()) -> str:
    """sha256 over tensors' bytes (in order) and a metric trace: equal iff bitwise equal."""
    import torch

    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    for x in trace:
        h.update(repr(float(x)).encode())
    return h.hexdigest()[:16]
