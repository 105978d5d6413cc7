"""The kernel study's experiment kinds, registered into harness.core.kinds: `kernel` (time the
variants of one kernel family over a grid of sizes) and `learn_kernel` (the book's 7.2 experiment).
Their tasks and speedups are harness.kernels.bench."""
from __future__ import annotations

import itertools
import json
import math
from typing import Any, Literal

from pydantic import Field, ValidationError

from harness.core.kinds import Float, Int, Kind, SpecBase, pydantic_problems, register_kind
from harness.core.registry import unknown_name_message
from harness.kernels import KERNELS
from harness.kernels.bench import add_speedups, kernel_tasks, learn_tasks
from harness.kernels.estimate import estimate_kernel, estimate_learn

MAX_SIZE_POINTS = 10_000  # one experiment's sizes grid; each point is a row per variant, timed for seconds


class KernelSpec(SpecBase):
    """Time the variants of one kernel family over the cartesian product of `sizes`."""

    kind: Literal["kernel"]
    kernel: str
    variants: list[str] = Field(min_length=1)
    baseline: str | None = None  # speedups are against this variant; default: the first
    sizes: dict[str, list[Any]] = Field(min_length=1)
    dtype: Literal["float32", "float64"] = "float32"
    min_run_time_s: Float = Field(0.2, gt=0, le=60)
    loop_max_iters: Int = Field(200_000, ge=0)  # Python-loop variants over this are 'capped'
    tolerance: Float | None = Field(None, gt=0)  # max |err| / max(1, max|ref|); default by dtype
    threads: Int = Field(1, ge=1)  # CPU threads while timing: one unless a suite says otherwise

    @property
    def baseline_variant(self) -> str:
        return self.baseline or self.variants[0]

    def cases(self) -> list:
        """The validated grid points, in the order the suite lists their values."""
        family = KERNELS.get(self.kernel)
        keys = list(self.sizes)
        return [family.case(**dict(zip(keys, values)))
                for values in itertools.product(*(self.sizes[k] for k in keys))]


class LearnKernelSpec(SpecBase):
    """The book's 7.2 experiment: learn the 1x2 edge-detection kernel by gradient descent."""

    kind: Literal["learn_kernel"]
    lr: Float = Field(3e-2, gt=0)
    iterations: Int = Field(10, ge=1, le=100_000)


def check_kernel(spec: KernelSpec, where: str) -> list[tuple[str, str]]:
    """Names against the kernel registry, sizes against the family's Case model, threads against
    the CPUs, and each size's tensors against the machine's memory."""
    from harness.core.envinfo import usable_cpus

    cpus = usable_cpus()
    threads = [(f"{where}.threads", f"{spec.threads} is more than the {cpus} CPUs this process may run on "
                f"(its affinity mask); at most {cpus}")] if spec.threads > cpus else []
    if spec.kernel not in KERNELS:
        return threads + [(f"{where}.kernel", unknown_name_message("kernel", spec.kernel, KERNELS.names()))]
    family = KERNELS.get(spec.kernel)
    known = list(family.variants)
    problems = threads + [(f"{where}.variants[{j}]", unknown_name_message(f"variant of kernel {spec.kernel}:", v, known))
                for j, v in enumerate(spec.variants) if v not in family.variants]
    if len(set(spec.variants)) != len(spec.variants):
        problems.append((f"{where}.variants", "a variant is listed twice"))
    if spec.baseline is not None and spec.baseline not in spec.variants:
        problems.append((f"{where}.baseline", f"{spec.baseline!r} is not one of this experiment's "
                         f"variants ({', '.join(spec.variants)})"))
    params = list(family.case.model_fields)
    for key, values in spec.sizes.items():
        if key not in params:
            problems.append((f"{where}.sizes.{key}", unknown_name_message(
                f"size parameter of kernel {spec.kernel}:", key, params)))
        elif not values:
            problems.append((f"{where}.sizes.{key}", "needs at least one value"))
    points = math.prod(len(v) for v in spec.sizes.values())
    if points > MAX_SIZE_POINTS:
        problems.append((f"{where}.sizes", f"{points:,} size points (the product of "
                         f"{' x '.join(str(len(v)) for v in spec.sizes.values())} values), more than "
                         f"{MAX_SIZE_POINTS:,}; split it into several experiments"))
    if problems:
        return problems
    keys = list(spec.sizes)
    largest = None  # (bytes, point) of the valid case needing the most memory
    for values in itertools.product(*spec.sizes.values()):
        point = dict(zip(keys, values))
        try:
            case = family.case.model_validate(point)
        except ValidationError as e:
            for loc, msg in pydantic_problems(e, prefix="", model=family.case):
                problems.append((f"{where}.sizes", f"{json.dumps(point)}: {loc + ': ' if loc else ''}{msg}"))
            continue
        need = memory_needed(case, spec.dtype)
        if need is not None and (largest is None or need > largest[0]):
            largest = (need, point)
    return problems + _memory_problems(largest, spec.dtype, where)


def memory_needed(case, dtype: str) -> int | None:
    """Bytes one case needs at least: its inputs and output in `dtype`, plus the float64 copies
    the check against the reference makes of them (the inputs are drawn in float64 too)."""
    elements = case.tensor_elements()
    return None if elements is None else elements * ({"float32": 4, "float64": 8}[dtype] + 8)


def _memory_problems(largest, dtype: str, where: str) -> list[tuple[str, str]]:
    """The host-memory rule: refuse a case whose tensors alone exceed the machine's RAM."""
    from harness.core.envinfo import gib, host_memory_bytes

    ram = host_memory_bytes()
    if largest is None or largest[0] <= ram:
        return []
    need, point = largest
    return [(f"{where}.sizes", f"{json.dumps(point)}: needs at least {gib(need)} (its inputs and output in "
             f"{dtype} plus float64 copies for the reference check), more than this machine's "
             f"{gib(ram)} of memory")]


def finalize_kernel(exp, rows: list[dict]) -> None:
    add_speedups(rows)


def describe_kernel(spec: KernelSpec) -> tuple[int, str]:
    n_cases = len(spec.cases())
    return n_cases * len(spec.variants), (f"kernel {spec.kernel}: {', '.join(spec.variants)} (baseline "
                                          f"{spec.baseline_variant}) x {n_cases} sizes, {spec.dtype}")


def describe_learn(spec: LearnKernelSpec) -> tuple[int, str]:
    return 1, f"lr {spec.lr}, {spec.iterations} iterations"


KERNEL = register_kind(Kind("kernel", KernelSpec, kernel_tasks, check_kernel, finalize_kernel, describe_kernel,
                           estimate_kernel))
LEARN_KERNEL = register_kind(Kind("learn_kernel", LearnKernelSpec, learn_tasks, describe=describe_learn,
                                 estimate=estimate_learn))
