"""Kernel timing on top of torch.utils.benchmark, with the statistics the results table keeps.

Inside the timed window: the call `fn()` and nothing else, repeated in blocks; on CUDA the Timer
synchronises the device before and after each block, so queued kernels are counted. Outside:
building inputs, the correctness check, and the warm-up / block-size calibration calls. Every
block's per-call time is kept as a sample.

Compare with a direct Timer on the same calls:  python -m harness.core.timing
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

# torch.utils.benchmark imports cpp_extension, which warns "No CUDA runtime is found" on every
# CPU machine; it is noise for a timing layer that never builds extensions.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Timing:
    median_s: float
    iqr_s: float
    mean_s: float
    n: int  # number of measurements (blocks); each is the mean of `number_per_run` calls
    number_per_run: int
    threads: int
    samples_s: tuple[float, ...]


MIN_BLOCKS = 3
BLOCKS_TARGET = 20  # aim for about this many blocks in min_run_time_s: a real IQR, not two samples


def time_call(fn: Callable[[], object], *, min_run_time_s: float = 0.2, threads: int | None = None,
              label: str = "", number: int | None = None) -> Timing:
    """Time `fn()` in blocks of `number` calls, each block one torch.utils.benchmark.Timer.timeit
    (which synchronises CUDA around it and runs on `threads` CPU threads; default: torch's current
    setting, which is recorded).

    The block size is chosen so a block lasts about min_run_time_s / 20 (timer overhead then stays
    far below 0.1%), and blocks run until min_run_time_s is spent and at least 3 were taken.
    blocked_autorange grows blocks by 10x until overhead is under 0.01%, which for a 10 us call
    leaves 2 blocks of 0.1 s in a 0.2 s budget: no spread can be measured from that.

    `number` fixes the block size instead (one warm-up call, no calibration): what a caller that
    times the same call again and again (the gate's rounds) learnt from the first time.
    """
    import torch
    from torch.utils import benchmark

    threads = threads or torch.get_num_threads()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=label)
    target = min_run_time_s / BLOCKS_TARGET
    given, number, elapsed = number, 1, timer.timeit(1).raw_times[0]  # the first call doubles as warm-up
    if given:
        number, elapsed = given, target
    while elapsed < target:  # calibrate (and warm up) the block size
        number = max(number * 2, min(number * 100, int(number * target / max(elapsed, 1e-9)) + 1))
        elapsed = timer.timeit(number).raw_times[0]
    samples, spent = [], 0.0
    while spent < min_run_time_s or len(samples) < MIN_BLOCKS:
        block = timer.timeit(number).raw_times[0]
        samples.append(block / number)
        spent += block
    q = torch.tensor(samples, dtype=torch.float64).quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return Timing(median_s=q[1].item(), iqr_s=(q[2] - q[0]).item(), mean_s=sum(samples) / len(samples),
                  n=len(samples), number_per_run=number, threads=threads, samples_s=tuple(samples))
