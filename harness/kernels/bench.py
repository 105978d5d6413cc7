"""Turns kernel experiments into tasks the runner executes one by one.

A kernel task is one variant at one size point: cap it if it is a Python loop over too many
pixels, check it against the float64 reference on fresh random inputs (a wrong variant is a
failed row, never a fast one), then time it on other inputs. Speedups against the baseline
variant are filled in once every task of the experiment has run.
"""
from __future__ import annotations

import json
import math
from functools import partial

from harness.core.determinism import derive_seed
from harness.core.kinds import Task

DEFAULT_TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
NOISY_IQR = 0.10  # a row whose IQR exceeds this fraction of its median is flagged `noisy`


def kernel_tasks(exp, device) -> list[Task]:
    from harness.kernels import KERNELS

    spec = exp.spec
    family = KERNELS.get(spec.kernel)
    tasks = []
    for case in spec.cases():
        for name in spec.variants:
            variant = family.variants[name]
            fields = {"family": family.name, "variant": name, "size": case.label(),
                      "config": json.dumps(case.model_dump(mode="json")), "dtype": spec.dtype,
                      "baseline": spec.baseline_variant, "code_hash": variant.code_hash,
                      "flops": float(case.flops())}
            params = {"kernel": family.name, "variant": name, "size": case.label(),
                      **case.model_dump(mode="json"), "dtype": spec.dtype,
                      "min_run_time_s": spec.min_run_time_s, "seed": spec.seed}
            tasks.append(Task(fields, params, partial(_run_one, spec, family, variant, case, device)))
    return tasks


def _run_one(spec, family, variant, case, device, ctx) -> dict:
    from harness.core.timing import time_call

    reason = capped_reason(spec, variant, case)
    if reason:
        return {"status": "capped", "error": reason}
    checked = check_variant(spec, family, variant, case, device)
    if checked.get("status") == "failed":
        return checked
    inputs = timing_inputs(spec, family, case, device)
    t = time_call(partial(variant.fn, case, *inputs), min_run_time_s=spec.min_run_time_s,
                  threads=spec.threads, label=f"{family.name}/{variant.name}")
    return {"status": "ok", **checked, "time_median_s": t.median_s,
            "time_iqr_s": t.iqr_s, "n_measurements": t.n, "threads": t.threads,
            "noisy": t.iqr_s > NOISY_IQR * t.median_s, "gflops": case.flops() / t.median_s / 1e9}


def capped_reason(spec, variant, case) -> str | None:
    """Why a Python-loop variant is not run at this size (None: it runs)."""
    iters = case.loop_iters()
    if variant.python_loop and iters > spec.loop_max_iters:
        return f"not run: {iters:,} Python loop iterations > loop_max_iters={spec.loop_max_iters:,}"
    return None


def check_variant(spec, family, variant, case, device) -> dict:
    """Run the variant once on fresh seeded inputs and compare it with the float64 reference.

    Returns {"max_abs_err", "tolerance"}, plus {"status": "failed", "error"} when the output has
    the wrong shape or is over tolerance (NaN included): a wrong variant is never timed. Shared by
    the kernel study, `harness check` (harness.gate.check) and tests/benchmarks."""
    import torch

    dtype = getattr(torch, spec.dtype)
    check_gen = torch.Generator().manual_seed(derive_seed(spec.seed, family.name, case.label(), "check"))
    inputs = family.make_inputs(case, check_gen, dtype, device)
    out = variant.fn(case, *inputs)
    ref = family.reference(case, *(x.detach().double().cpu() for x in inputs))
    tol = (spec.tolerance or DEFAULT_TOLERANCE[spec.dtype]) * max(1.0, ref.abs().max().item())
    if tuple(out.shape) != tuple(ref.shape):
        return {"status": "failed", "tolerance": tol,
                "error": f"wrong output shape {tuple(out.shape)}, reference {tuple(ref.shape)}"}
    err = (out.detach().double().cpu() - ref).abs().max().item() if ref.numel() else 0.0
    if not err <= tol:  # also catches NaN
        return {"status": "failed", "max_abs_err": err, "tolerance": tol,
                "error": f"wrong result: max abs error {err:.3g} > tolerance {tol:.3g}"}
    return {"max_abs_err": err, "tolerance": tol}


def timing_inputs(spec, family, case, device) -> tuple:
    """The inputs a variant is timed on: seeded, and different from the checked ones."""
    import torch

    time_gen = torch.Generator().manual_seed(derive_seed(spec.seed, family.name, case.label(), "time"))
    return family.make_inputs(case, time_gen, getattr(torch, spec.dtype), device)


def add_speedups(rows: list[dict]) -> None:
    """speedup = baseline variant's median / this row's median, per (size, seed); NaN where
    either side has no time (failed or capped)."""
    base = {(r["size"], r["seed"]): r.get("time_median_s") for r in rows if r["variant"] == r["baseline"]}
    for r in rows:
        b, t = base.get((r["size"], r["seed"])), r.get("time_median_s")
        r["speedup"] = b / t if b and t and not (math.isnan(b) or math.isnan(t)) else math.nan


def learn_tasks(exp, device) -> list[Task]:
    spec = exp.spec
    fields = {"family": "learn_kernel", "variant": "sgd", "size": "X=6x8 K=1x2", "dtype": "float32",
              "config": json.dumps({"lr": spec.lr, "iterations": spec.iterations})}
    params = {"lr": spec.lr, "iterations": spec.iterations, "seed": spec.seed}
    return [Task(fields, params, partial(_learn, spec, device))]


def _learn(spec, device, ctx) -> dict:
    from harness.kernels import learn_edge_kernel

    out = learn_edge_kernel(lr=spec.lr, iterations=spec.iterations, seed=spec.seed, device=str(device))
    for step, loss in enumerate(out["losses"], start=1):
        ctx.log({"loss": loss}, step)
    row = {"status": "ok", "loss_final": out["losses"][-1],
           "learned_kernel": json.dumps([round(w, 6) for w in out["kernel"]])}
    bad = next((i for i, loss in enumerate(out["losses"], start=1) if not math.isfinite(loss)), None)
    if bad is None and not all(map(math.isfinite, out["kernel"])):
        bad = spec.iterations  # the last update overflowed the weights: the loss would show it next
    if bad is not None:  # as a training whose loss turns NaN/inf: diverged, not ok with NaN weights
        loss = out["losses"][bad - 1]
        row |= {"status": "diverged", "error": f"loss became {loss} at iteration {bad} of {spec.iterations} "
                f"(lr {spec.lr:g}): gradient descent diverged; try a smaller lr (the book uses 0.03)"}
    return row
