"""This timing layer (harness.core.timing.time_call) against a direct torch.utils.benchmark Timer on
identical kernel calls, interleaved:  python -m harness.gate.timing"""
from __future__ import annotations

import statistics

from harness.core.timing import time_call


def compare_with_direct_timer(repeats: int = 5) -> list[dict]:
    """Median of this layer vs a direct Timer on identical calls, interleaved `repeats` times."""
    import torch
    from torch.utils import benchmark

    from harness.kernels import KERNELS

    gen = torch.Generator().manual_seed(0)
    cases = [("corr2d", "native", dict(input=(128, 128), kernel=(5, 5))),
             ("corr2d", "vectorized", dict(input=(128, 128), kernel=(5, 5))),
             ("corr2d_multi_in_out", "native", dict(channels_in=16, channels_out=16, input=(64, 64), kernel=(3, 3))),
             ("conv1x1", "matmul", dict(channels_in=64, channels_out=64, input=(32, 32))),
             ("pool2d", "vectorized", dict(input=(128, 128), pool=(3, 3)))]
    rows = []
    for family_name, variant, sizes in cases:
        family = KERNELS.get(family_name)
        case = family.case(**sizes)
        inputs = family.make_inputs(case, gen, torch.float32, torch.device("cpu"))
        fn = family.variants[variant].fn
        ours, direct = [], []
        for _ in range(repeats):
            ours.append(time_call(lambda: fn(case, *inputs)).median_s)
            t = benchmark.Timer(stmt="fn(case, *inputs)", globals={"fn": fn, "case": case, "inputs": inputs},
                                num_threads=torch.get_num_threads())
            direct.append(t.blocked_autorange(min_run_time=0.2).median)
        rows.append({"case": f"{family_name}/{variant} {case.label()}",
                     "harness_median_us": statistics.median(ours) * 1e6,
                     "direct_median_us": statistics.median(direct) * 1e6,
                     "ratio": statistics.median(ours) / statistics.median(direct)})
    return rows


if __name__ == "__main__":
    for row in compare_with_direct_timer():
        print(f"{row['case']:<60} harness {row['harness_median_us']:10.2f} us   "
              f"direct Timer {row['direct_median_us']:10.2f} us   ratio {row['ratio']:.3f}")
