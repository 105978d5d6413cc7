"""How long a `kernel` or `learn_kernel` experiment will take, before it runs: their kinds'
`estimate` (harness.core.kinds.Work, one unit per results row), from the spec.

A timed row (harness.kernels.bench._run_one, harness.core.timing.time_call) costs the check
against the reference (one call), the calibration (the first call, then blocks doubling up to
min_run_time_s / 20: about a tenth of min_run_time_s) and the blocks (min_run_time_s, and at least
MIN_BLOCKS calls): max(min_run_time_s, 3 calls) + 0.1 min_run_time_s + 2 calls + ROW_S. A call of
the book's Python loops costs its loop iterations x the cost of one, measured once per process and
device on the corr2d loop (`loop_iter_s`, ~7 us on a CPU); a vectorised or native call costs its
FLOPs over VECTOR_RATE (a rough rate: such calls are far shorter than min_run_time_s but on the
largest sizes). A capped row is not run: ROW_S.
"""
from __future__ import annotations

import time

from harness.core.kinds import Work
from harness.core.timing import MIN_BLOCKS

ROW_S = 0.01  # per row: inputs, the float64 reference, the row itself
VECTOR_RATE = {"cpu": 2e9, "cuda": 2e11}  # FLOP/s of a vectorised kernel call (one CPU thread; a GPU)
LEARN_ITER_S = 2e-4  # one iteration of the book's 7.2 gradient descent (a few tiny ops and a sync)
_LOOP_ITER_S: dict[str, float] = {}


def loop_iter_s(device) -> float:
    """Seconds of one inner iteration of the book's corr2d loop on `device` (measured once: ~10 ms)."""
    key = str(device)
    if key not in _LOOP_ITER_S:
        import torch

        from harness.kernels.seed import corr2d

        X, K = torch.ones(12, 12, device=device), torch.ones(2, 2, device=device)
        corr2d(X, K)  # warm-up
        sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
        sync()
        t = time.perf_counter()
        corr2d(X, K)
        sync()
        _LOOP_ITER_S[key] = (time.perf_counter() - t) / (11 * 11)
    return _LOOP_ITER_S[key]


def row_seconds(min_run_time_s: float, call_s: float) -> float:
    """One timed row whose call lasts `call_s` (see the module)."""
    return max(min_run_time_s, MIN_BLOCKS * call_s) + 0.1 * min_run_time_s + 2 * call_s + ROW_S


def estimate_kernel(spec, device, iter_s: float | None = None) -> Work:
    """Each row of the experiment, in the order of its tasks (sizes, then variants)."""
    from harness.kernels import KERNELS
    from harness.kernels.bench import capped_reason

    family = KERNELS.get(spec.kernel)
    if iter_s is None:
        iter_s = loop_iter_s(device) if any(family.variants[v].python_loop for v in spec.variants) else 0.0
    rate = VECTOR_RATE["cuda" if str(device).startswith("cuda") else "cpu"]
    rows = []
    for case in spec.cases():
        for name in spec.variants:
            variant = family.variants[name]
            if capped_reason(spec, variant, case):
                rows.append((ROW_S,))
                continue
            call = case.loop_iters() * iter_s if variant.python_loop else case.flops() / rate
            rows.append((row_seconds(spec.min_run_time_s, call),))
    return Work("row", tuple(rows))


def estimate_learn(spec, device) -> Work:
    return Work("row", ((spec.iterations * LEARN_ITER_S + ROW_S,),))
