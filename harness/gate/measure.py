"""Measuring a kernel suite for the CI regression gate (`harness baseline` and `harness check`).

A `Side` is one tree's kernels measured in one process: each case (experiment x variant x size
point) is first checked against its float64 reference (harness.kernels.bench.check_variant: a
wrong variant is `failed`, never timed); then every `round()` times the calibration workload and
every case once (harness.core.timing.time_call, the experiment's `min_run_time_s` per case and round),
and a closing calibration ends the last round. A machine that slows down mid-run (another job, a
throttled clock, a VM's neighbour) slows the calibration next to the cases it slows. `baseline`
and a baseline-mode `check` run one Side in-process (`measure_suite`); an A/B check runs two, one
per tree, in worker processes whose rounds alternate (harness.gate.ab).

The statistic. Within a round a case's time is its best block (time_call's blocks are each the mean
of many calls, ~1/20 of the budget long): noise on a shared machine only ever adds time, and with
1 ms blocks some land between two time slices of a competing process, as Python's timeit advises.
It is divided by the calibration's best block around that round (geometric mean of the one
before and the one after). The per-round normalised values are the case's samples; harness.gate.check
compares their medians and tests the difference. Every block of every round is kept.

Why this calibration workload: a 128x128 matmul, a 16->16-channel 3x3 conv2d on 32x32 and a 2x2
max pool of 16x30x30, float32, fixed seeded inputs, each timed on its own (like a case) and
combined as the geometric mean of their best blocks (~40 us on one core). They go through the same
libraries (GEMM, oneDNN convolution, ATen pooling) with the same kind of small, few-dispatch calls
as the kernels of kernels-ci.yaml, so what makes a machine uniformly faster or slower at those
(clock, load, a VM's share of a core) scales them alike. Three parts timed apart, not one call of
all three: a single composite varied ~10% from one process to the next here (allocation and
layout luck), the geometric mean of separate parts ~2%. It does not carry a measurement across
micro-architectures or torch builds (an AVX-512 Xeon and an AVX2 EPYC favour different kernels by
up to 2x): a baseline applies only to the machine it was recorded on (`speed_fingerprint`), and
elsewhere `check` measures the baseline's commit side by side instead. Changing the workload
changes every normalised number: CALIBRATION_ID.

The plan. What a Side measures is a plain list of dicts (`plan(suite)`: experiment id, kernel,
variants, size configs and labels, seed, dtype, tolerance, caps, threads), made by this tree's
suite loader: an A/B worker measuring another revision's kernels gets exactly the same cases
without loading the suite with that revision's code.

For the calibration study only (harness.gate.study): HARNESS_REGRESS_SLOWDOWN=F makes every
case's call busy-wait (F - 1) times its own duration after it runs, so each call takes F times as
long; the calibration is left alone.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from harness.core.errors import UserError
from harness.gate.machine import device_class, speed_fingerprint

FORMAT, FORMAT_VERSION = "harness-kernel-baseline", 2
ROUNDS = 10
MIN_ROUNDS, MAX_ROUNDS = 3, 10_000  # a median and a test need several rounds; whether a test can reach its
#                                     significance with them is harness.gate.check.min_rounds
CALIBRATION_ID = "geomean(mm128, conv16x32x32k3, maxpool2x16x30x30)-v1"
CALIBRATION_RUN_TIME_S = 0.02  # per round, like the cases of kernels-ci.yaml: ~20 blocks of 1 ms
SLOWDOWN_ENV = "HARNESS_REGRESS_SLOWDOWN"


def injected_slowdown() -> float | None:
    raw = os.environ.get(SLOWDOWN_ENV)
    if not raw:
        return None
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not (factor >= 1 and math.isfinite(factor)):  # inf would busy-wait forever
        raise UserError(f"{SLOWDOWN_ENV}={raw}: give a finite factor >= 1 (e.g. 1.5), or unset it")
    return factor


def plan(suite) -> list[dict]:
    """The suite's kernel experiments as plain data: what a Side (here or in a worker) measures."""
    return [{"id": exp.id, "kernel": s.kernel, "variants": list(s.variants), "baseline_variant": s.baseline_variant,
             "cases": [{"label": c.label(), "config": c.model_dump(mode="json")} for c in s.cases()],
             "seed": s.seed, "dtype": s.dtype, "tolerance": s.tolerance, "loop_max_iters": s.loop_max_iters,
             "min_run_time_s": s.min_run_time_s, "threads": s.threads, "determinism": s.determinism}
            for exp in suite.experiments for s in [exp.spec]]


class Side:
    """One tree's kernels, checked, then timed round by round with the calibration workload."""

    def __init__(self, experiments: list[dict], device: str, slowdown: float | None = None):
        import torch

        self.device, self.slowdown = device, slowdown
        self.dev = torch.device(device)
        self.t0 = time.perf_counter()
        self.cases, self.calls = _prepare(experiments, self.dev, slowdown)
        self.workload = calibration_workload(self.dev)
        threads = sorted({self.cases[k]["threads"] for k in self.calls})
        self.calib = {t: {name: [] for name in self.workload} for t in threads}

    def calibrate(self) -> None:
        from harness.core import determinism

        determinism.configure("strict")  # the calibration always runs in the same mode
        for threads, parts in self.calib.items():
            for name, fn in self.workload.items():
                first = parts[name][0].number_per_run if parts[name] else None
                parts[name].append(_time(fn, CALIBRATION_RUN_TIME_S, threads, first))

    def time_case(self, key: str, share: float = 1.0) -> None:
        """Time one case once (`share` of its `min_run_time_s`), keeping its best block and every
        sample; the block size found the first time is kept for every later time."""
        from harness.core import determinism

        spec, fn = self.calls[key]
        entry = self.cases[key]
        if entry["status"] != "ok":
            return
        determinism.configure(spec.determinism)
        try:
            t = _time(fn, spec.min_run_time_s * share, entry["threads"], (entry["number_per_run"] or [None])[0])
        except Exception as e:  # isolation: one raising case is failed, the others go on
            entry.update(status="failed", error=f"{type(e).__name__}: {e}")
            return
        entry["best_s"].append(min(t.samples_s))
        entry["round_median_s"].append(t.median_s)
        entry["number_per_run"].append(t.number_per_run)
        entry["samples_s"].append(list(t.samples_s))

    def skip(self, keys: list[str]) -> None:
        """Cases the other side of an A/B check cannot run: not timed here either."""
        for key in keys:
            self.cases[key].update(status="skipped", error="not timed: the other side cannot run it")
            del self.calls[key]

    def time_cases(self) -> None:
        for key in self.calls:
            self.time_case(key)

    def round(self) -> None:
        """The calibration, then every case once."""
        self.calibrate()
        self.time_cases()

    def result(self) -> dict:
        """After the closing calibration: the normalised samples, speedups and the calibration."""
        calibration = {str(t): _calibration(parts) for t, parts in self.calib.items()}
        _normalise(self.cases, calibration)
        summarise(self.cases)
        rounds = len(next(iter(calibration.values()))["best_s"]) - 1 if calibration else 0
        return {"rounds": rounds, "injected_slowdown": self.slowdown, "calibration": calibration,
                "cases": self.cases, "wall_s": time.perf_counter() - self.t0}


def measure_suite(suite, device: str, rounds: int = ROUNDS) -> dict:
    """Check and time every kernel case of `suite` in this process; returns the baseline document
    (see harness.gate.check for how it is read back and compared)."""
    slowdown = injected_slowdown()
    side = Side(plan(suite), device, slowdown)
    print(f"timing {len(side.calls)} cases in {rounds} interleaved rounds with the calibration workload"
          + (f" (injected slowdown x{slowdown})" if slowdown else ""), file=sys.stderr, flush=True)
    for _ in range(rounds):
        side.round()
    side.calibrate()
    return document(suite, device, side.result())


def document(suite, device: str, measured: dict, env: dict | None = None) -> dict:
    """A baseline document: what was measured, where (device class, speed fingerprint,
    environment with the git commit) and how."""
    from harness.core import envinfo

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "suite": suite.name, "suite_file": str(suite.path),
            "device": device, "device_class": device_class(device), "machine": speed_fingerprint(device),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "method": {"rounds": measured["rounds"], "calibration": CALIBRATION_ID,
                       "injected_slowdown": measured["injected_slowdown"],
                       "statistic": "per round: best block / geometric mean of the calibration parts' best "
                                    "blocks before and after the round; compared: median over rounds"},
            "env": (env or envinfo.collect()) | {"device": device}, "wall_s": measured["wall_s"],
            "calibration": measured["calibration"], "cases": measured["cases"]}


def _time(fn, min_run_time_s: float, threads: int, number: int | None = None):
    from harness.core.timing import time_call

    return time_call(fn, min_run_time_s=min_run_time_s, threads=threads, number=number)


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


def _prepare(experiments: list[dict], dev, slowdown):
    """One entry per case (cap, correctness check, settings) and the calls to time. A kernel,
    variant or size this tree's kernels do not have is `missing` (an A/B side of another revision)."""
    import torch

    from harness.core import determinism
    from harness.kernels import KERNELS
    from harness.kernels.bench import capped_reason, check_variant, timing_inputs
    from harness.run.rundir import task_key

    cases, calls = {}, {}
    for exp in experiments:
        spec = SimpleNamespace(**exp)
        family = KERNELS.get(spec.kernel) if spec.kernel in KERNELS else None
        determinism.configure(spec.determinism)
        for point in spec.cases:
            for name in spec.variants:
                key = task_key(spec.id, name, point["label"])
                variant = family.variants.get(name) if family else None
                entry = cases[key] = {
                    "experiment": spec.id, "family": spec.kernel, "variant": name, "size": point["label"],
                    "baseline_variant": spec.baseline_variant, "code_hash": variant and variant.code_hash,
                    "dtype": spec.dtype, "threads": spec.threads or torch.get_num_threads(),
                    "min_run_time_s": spec.min_run_time_s, "status": "ok", "error": None, "best_s": [],
                    "round_median_s": [], "number_per_run": [], "samples_s": []}
                if variant is None:
                    entry.update(status="missing", error=f"no {'variant ' + name + ' of ' if family else ''}"
                                                         f"kernel {spec.kernel} in this tree")
                    continue
                try:
                    case = family.case(**point["config"])
                except Exception as e:  # this tree's kernel takes other sizes
                    entry.update(status="missing", error=f"size not valid in this tree: {e}")
                    continue
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
    """Per-round normalised samples; a case whose times are not finite positive numbers is failed
    (a measurement that cannot be trusted is never compared)."""
    for entry in cases.values():
        if entry["status"] != "ok":
            continue
        cal = calibration[str(entry["threads"])]["best_s"]
        values = [b / math.sqrt(cal[i] * cal[i + 1]) for i, b in enumerate(entry["best_s"])]
        if not values or not all(math.isfinite(v) and v > 0 for v in values + entry["best_s"]):
            entry.update(status="failed", error=f"not a finite positive time in {len(values)} rounds "
                                                f"(best blocks {entry['best_s']})")
            continue
        entry["normalised"] = values


def summarise(cases: dict) -> None:
    """Medians over rounds and speedups, from the per-round lists (after measuring, or merging)."""
    for entry in cases.values():
        if entry["status"] == "ok":
            entry["median_s"] = statistics.median(entry["best_s"])
            entry["normalised_median"] = statistics.median(entry["normalised"])
    _speedups(cases)


def _speedups(cases: dict) -> None:
    """Median over rounds of (baseline variant's best / this variant's best), same experiment and
    size: both timed in the same round, so no normaliser is needed."""
    for entry in cases.values():
        base = next((e for e in cases.values() if e["experiment"] == entry["experiment"]
                     and e["size"] == entry["size"] and e["variant"] == entry["baseline_variant"]), None)
        ok = entry["status"] == "ok" and base is not None and base["status"] == "ok"
        entry["speedup"] = statistics.median(b / v for b, v in zip(base["best_s"], entry["best_s"])) if ok else None


def kernel_suite(suite_path: Path):
    from harness.suite import load_suite

    suite = load_suite(suite_path)
    others = [f"{e.id} ({e.spec.kind})" for e in suite.experiments if e.spec.kind != "kernel"]
    if others:
        raise UserError(f"{suite_path}: the regression gate times kernel experiments only; remove "
                        f"{', '.join(others)} or use another suite (e.g. suites/kernels-ci.yaml)")
    return suite


def check_rounds(rounds: int) -> None:
    if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise UserError(f"--rounds {rounds}: from {MIN_ROUNDS} (a median and a test need several rounds) to "
                        f"{MAX_ROUNDS:,}, e.g. {ROUNDS}")
