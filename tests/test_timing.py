"""The timing layer: every sample kept, a real spread (>= 3 blocks), threads recorded, and the
call inside the window."""
from __future__ import annotations

import time

import torch

from harness.core.timing import MIN_BLOCKS, time_call


def test_fast_calls_get_many_blocks_and_consistent_statistics():
    x = torch.randn(8)
    # microseconds: many calls per block; 20 blocks planned, so >= 5 even if the machine's speed drops to a
    # quarter after the block size was chosen (a shared VM does: 9 blocks were seen under a full test run)
    t = time_call(lambda: x.add(1), min_run_time_s=0.2)
    assert t.n >= 5 and len(t.samples_s) == t.n and t.number_per_run > 1
    assert min(t.samples_s) <= t.median_s <= max(t.samples_s)
    assert 0 <= t.iqr_s <= max(t.samples_s) - min(t.samples_s)
    assert t.threads == torch.get_num_threads()


def test_slow_calls_still_get_at_least_three_blocks_of_one_call():
    t = time_call(lambda: time.sleep(0.02), min_run_time_s=0.01)
    assert t.n == MIN_BLOCKS and t.number_per_run == 1
    assert t.median_s >= 0.02  # the sleep is inside the window


def test_threads_are_set_while_timing_and_restored():
    before = torch.get_num_threads()
    seen = []
    t = time_call(lambda: seen.append(torch.get_num_threads()), min_run_time_s=0.001, threads=1)
    assert t.threads == 1 and set(seen[1:]) == {1}
    assert torch.get_num_threads() == before
