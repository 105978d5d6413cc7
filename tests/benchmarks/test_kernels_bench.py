"""The cases of suites/kernels-ci.yaml as pytest-benchmark benchmarks, for those who prefer its
workflow to `harness check`:

    pytest tests/benchmarks --benchmark-autosave                                      # record .benchmarks/
    pytest tests/benchmarks --benchmark-compare --benchmark-compare-fail=median:25%   # fail when 25% slower

Skipped in the normal test run; they run when this directory is named on the command line or with
`-m benchmark_suite`. (The switch is an autouse fixture, not a conftest.py here: a second
conftest.py outside a package would shadow tests/conftest.py, which the tests import by name.)

Cases come from the suite and the kernel registry, nothing is copied: each is checked against its
float64 reference first (a wrong variant fails, it is never timed), timed on the suite's thread
count, and on CUDA every timed call ends with torch.cuda.synchronize(), so the kernels it queued
are inside the window. Unlike `harness check`, pytest-benchmark compares raw seconds: no
calibration, no significance test.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from harness.kernels import KERNELS
from harness.kernels.bench import capped_reason, check_variant, timing_inputs
from harness.suite import load_suite

HERE = Path(__file__).resolve().parent
SUITE = HERE.parents[1] / "suites" / "kernels-ci.yaml"

pytestmark = pytest.mark.benchmark_suite


def _cases():
    for exp in load_suite(SUITE).experiments:
        for case in exp.spec.cases():
            for name in exp.spec.variants:
                yield pytest.param(exp.spec, case, name, id=f"{exp.id}/{name}/{case.label()}".replace(" ", "_"))


def _asked(config) -> bool:
    markexpr = config.getoption("markexpr") or ""
    if "benchmark_suite" in markexpr and "not benchmark_suite" not in markexpr:
        return True
    where = Path(config.invocation_params.dir)
    paths = [a.split("::")[0] for a in config.invocation_params.args if not a.startswith("-")]
    return any((where / p).resolve().is_relative_to(HERE) for p in paths)


@pytest.fixture(autouse=True)
def _only_when_asked(request):
    if not _asked(request.config):
        pytest.skip("kernel benchmarks: run `pytest tests/benchmarks` or `pytest -m benchmark_suite`")


@pytest.mark.parametrize("spec, case, variant_name", list(_cases()))
def test_kernel(benchmark, spec, case, variant_name):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    family = KERNELS.get(spec.kernel)
    variant = family.variants[variant_name]
    reason = capped_reason(spec, variant, case)
    if reason:
        pytest.skip(reason)
    checked = check_variant(spec, family, variant, case, device)
    if checked.get("status") == "failed":
        pytest.fail(f"{family.name}/{variant_name} {case.label()}: {checked['error']}")
    call = partial(variant.fn, case, *timing_inputs(spec, family, case, device))
    timed = call
    if device.type == "cuda":
        def timed():
            out = call()
            torch.cuda.synchronize()  # the kernels this call queued finish inside the window
            return out

        timed()  # nothing of the check is still queued when timing starts
    benchmark.group = f"{family.name} {case.label()}"
    benchmark.extra_info.update(family=family.name, variant=variant_name, size=case.label(), device=str(device),
                                code_hash=variant.code_hash, flops=case.flops())
    before = torch.get_num_threads()
    torch.set_num_threads(spec.threads or before)
    try:
        benchmark(timed)
    finally:
        torch.set_num_threads(before)
