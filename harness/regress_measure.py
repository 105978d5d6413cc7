"""Measuring a kernel suite for the CI regression gate (`harness baseline` and `harness check`).

Each case (experiment x variant x size point) is first checked against its float64 reference
(harness.kernels.bench.check_variant: a wrong variant is `failed`, never timed). Then everything is
timed in ROUNDS interleaved rounds: a round times the calibration workload, then every case once
(harness.timing.time_call, the experiment's `min_run_time_s` per case and round), and a closing
calibration ends the last round. A machine that slows down mid-run (another job, a throttled
clock, a VM's neighbour) slows the calibration next to the cases it slows.

The statistic. Within a round a case's time is its best block (time_call's blocks are each the mean
of many calls, ~1/20 of the budget long): noise on a shared machine only ever adds time, and with
1 ms blocks some land between two time slices of a competing process, as Python's timeit advises.
It is divided by the calibration's best block around that round (geometric mean of the one
before and the one after). The ROUNDS normalised values are the case's samples; harness.regress
compares their medians and tests the difference. Every block of every round is kept.

Why this calibration workload: a 128x128 matmul, a 16->16-channel 3x3 conv2d on 32x32 and a 2x2
max pool of 16x30x30, float32, fixed seeded inputs, each timed on its own (like a case) and
combined as the geometric mean of their best blocks (~40 us on one core). They go through the same
libraries (GEMM, oneDNN convolution, ATen pooling) with the same kind of small, few-dispatch calls
as the kernels of kernels-ci.yaml, so what makes a machine uniformly faster or slower at those
(clock, load, a VM's share of a core) scales them alike. Three parts timed apart, not one call of
all three: a single composite varied ~10% from one process to the next here (allocation and
layout luck), the geometric mean of separate parts ~2%. It cannot cancel a different
micro-architecture favouring one kernel (AVX-512 vs AVX2): record a baseline per runner type if
that shows up. Changing it changes every normalised number: CALIBRATION_ID.

For the calibration study only (harness.regress_study): HARNESS_REGRESS_SLOWDOWN=F makes every
case's call busy-wait (F - 1) times its own duration after it runs, so each call takes F times as
long; the calibration is left alone.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import re
import statistics
import sys
import time
from functools import partial

from harness.errors import UserError

FORMAT, FORMAT_VERSION = "harness-kernel-baseline", 1
ROUNDS = 10
CALIBRATION_ID = "geomean(mm128, conv16x32x32k3, maxpool2x16x30x30)-v1"
CALIBRATION_RUN_TIME_S = 0.02  # per round, like the cases of kernels-ci.yaml: ~20 blocks of 1 ms
SLOWDOWN_ENV = "HARNESS_REGRESS_SLOWDOWN"


def device_class(device: str) -> str:
    """What a baseline is valid for: `cpu` for any CPU (normalisation absorbs the differences
    between CPUs), `cuda-<GPU name, lower case, runs of other characters as '-'>` for a GPU, e.g.
    cuda-nvidia-h100-80gb-hbm3 (GPUs differ too much in kind for one normaliser)."""
    if not device.startswith("cuda"):
        return "cpu"
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def injected_slowdown() -> float | None:
    raw = os.environ.get(SLOWDOWN_ENV)
    if not raw:
        return None
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not factor >= 1:
        raise UserError(f"{SLOWDOWN_ENV}={raw}: give a factor >= 1 (e.g. 1.5), or unset it")
    return factor


def measure_suite(suite, device: str) -> dict:
    """Check and time every kernel case of `suite`; returns the baseline document (see
    harness.regress for how it is read back and compared)."""
    import torch

    from harness import determinism, envinfo

    t0 = time.perf_counter()
    dev = torch.device(device)
    slowdown = injected_slowdown()
    cases, calls = _prepare(suite, dev, slowdown)
    workload = calibration_workload(dev)
    calib = {t: {name: [] for name in workload} for t in sorted({cases[k]["threads"] for k in calls})}
    print(f"timing {len(calls)} cases in {ROUNDS} interleaved rounds with the calibration workload"
          + (f" (injected slowdown x{slowdown})" if slowdown else ""), file=sys.stderr, flush=True)
    for r in range(ROUNDS + 1):
        determinism.configure("strict")  # the calibration always runs in the same mode
        for threads, parts in calib.items():
            for name, fn in workload.items():
                parts[name].append(_time(fn, CALIBRATION_RUN_TIME_S, threads))
        if r == ROUNDS:
            break
        for key, (spec, fn) in calls.items():
            entry = cases[key]
            if entry["status"] != "ok":
                continue
            determinism.configure(spec.determinism)
            try:
                t = _time(fn, spec.min_run_time_s, entry["threads"])
            except Exception as e:  # isolation: one raising case is failed, the others go on
                entry.update(status="failed", error=f"{type(e).__name__}: {e}")
                continue
            entry["best_s"].append(min(t.samples_s))
            entry["round_median_s"].append(t.median_s)
            entry["number_per_run"].append(t.number_per_run)
            entry["samples_s"].append(list(t.samples_s))
    calibration = {str(t): _calibration(parts) for t, parts in calib.items()}
    _normalise(cases, calibration)
    _speedups(cases)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "suite": suite.name, "suite_file": str(suite.path),
            "device": device, "device_class": device_class(device),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "method": {"rounds": ROUNDS, "calibration": CALIBRATION_ID, "injected_slowdown": slowdown,
                       "statistic": "per round: best block / geometric mean of the calibration parts' best "
                                    "blocks before and after the round; compared: median over rounds"},
            "env": envinfo.collect() | {"device": device}, "wall_s": time.perf_counter() - t0,
            "calibration": calibration, "cases": cases}


def _time(fn, min_run_time_s: float, threads: int):
    from harness.timing import time_call

    return time_call(fn, min_run_time_s=min_run_time_s, threads=threads)


def calibration_workload(device) -> dict:
    """The fixed workload every case is normalised by (see the module docstring for why): three
    parts timed one by one, combined as the geometric mean of their best blocks."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(128, 128, generator=gen).to(device) for _ in range(2))
    x, w = torch.randn(1, 16, 32, 32, generator=gen).to(device), torch.randn(16, 16, 3, 3, generator=gen).to(device)
    y = torch.randn(1, 16, 30, 30, generator=gen).to(device)
    return {"mm128": partial(torch.mm, a, b), "conv16x32x32k3": partial(F.conv2d, x, w),
            "maxpool2x16x30x30": partial(F.max_pool2d, y, 2)}


def _calibration(parts: dict) -> dict:
    """Per round (and one closing), the geometric mean of the parts' best blocks; every sample kept."""
    best = {name: [min(t.samples_s) for t in ts] for name, ts in parts.items()}
    rounds = len(next(iter(best.values())))
    geomean = [math.exp(statistics.fmean(math.log(b[r]) for b in best.values())) for r in range(rounds)]
    return {"best_s": geomean, "parts": {name: {
        "best_s": best[name], "round_median_s": [t.median_s for t in ts], "number_per_run": [t.number_per_run for t in ts],
        "samples_s": [list(t.samples_s) for t in ts]} for name, ts in parts.items()}}


def _prepare(suite, dev, slowdown):
    """One entry per case (cap, correctness check, settings) and the calls to time."""
    import torch

    from harness import determinism
    from harness.kernels import KERNELS
    from harness.kernels.bench import capped_reason, check_variant, timing_inputs
    from harness.rundir import task_key

    cases, calls = {}, {}
    for exp in suite.experiments:
        spec = exp.spec
        family = KERNELS.get(spec.kernel)
        determinism.configure(spec.determinism)
        for case in spec.cases():
            for name in spec.variants:
                variant = family.variants[name]
                key = task_key(exp.id, name, case.label())
                entry = cases[key] = {
                    "experiment": exp.id, "family": family.name, "variant": name, "size": case.label(),
                    "baseline_variant": spec.baseline_variant, "code_hash": variant.code_hash, "dtype": spec.dtype,
                    "threads": spec.threads or torch.get_num_threads(), "min_run_time_s": spec.min_run_time_s,
                    "status": "ok", "error": None, "best_s": [], "round_median_s": [], "number_per_run": [],
                    "samples_s": []}
                reason = capped_reason(spec, variant, case)
                if reason:
                    entry.update(status="capped", error=reason)
                    continue
                try:
                    entry.update(check_variant(spec, family, variant, case, dev))
                except Exception as e:
                    entry.update(status="failed", error=f"{type(e).__name__}: {e}")
                if entry["status"] == "ok":
                    fn = partial(variant.fn, case, *timing_inputs(spec, family, case, dev))
                    calls[key] = (spec, _slowed(fn, slowdown, dev) if slowdown else fn)
    return cases, calls


def _slowed(fn, factor: float, dev):
    """fn, then a busy wait of (factor - 1) x its own duration: every call takes factor x as long."""
    import torch

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def slowed():
        start = time.perf_counter()
        out = fn()
        sync()
        end = start + factor * (time.perf_counter() - start)
        while time.perf_counter() < end:
            pass
        return out

    return slowed


def _normalise(cases: dict, calibration: dict) -> None:
    for entry in cases.values():
        if entry["status"] != "ok":
            continue
        cal = calibration[str(entry["threads"])]["best_s"]
        entry["normalised"] = [b / math.sqrt(cal[i] * cal[i + 1]) for i, b in enumerate(entry["best_s"])]
        entry["median_s"] = statistics.median(entry["best_s"])
        entry["normalised_median"] = statistics.median(entry["normalised"])


def _speedups(cases: dict) -> None:
    """Median over rounds of (baseline variant's best / this variant's best), same experiment and
    size: both timed in the same round, so no normaliser is needed."""
    for entry in cases.values():
        base = next((e for e in cases.values() if e["experiment"] == entry["experiment"]
                     and e["size"] == entry["size"] and e["variant"] == entry["baseline_variant"]), None)
        ok = entry["status"] == "ok" and base is not None and base["status"] == "ok"
        entry["speedup"] = statistics.median(b / v for b, v in zip(base["best_s"], entry["best_s"])) if ok else None
