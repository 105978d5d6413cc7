"""The experiment kinds a suite can declare, as frozen pydantic models, and the checks that need
the kernel and model registries (names, variants, sizes, model arguments).

harness.suite reads YAML into these; everything here raises nothing itself but returns
(location, message) problems, so that one suite's mistakes are reported together.
"""
from __future__ import annotations

import itertools
import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.registry import unknown_name_message

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=80)
    seed: int = Field(0, ge=0)
    determinism: Literal["strict", "fast"] = "strict"


class KernelSpec(_Spec):
    """Time the variants of one kernel family over the cartesian product of `sizes`."""

    kind: Literal["kernel"]
    kernel: str
    variants: list[str] = Field(min_length=1)
    baseline: str | None = None  # speedups are against this variant; default: the first
    sizes: dict[str, list[Any]] = Field(min_length=1)
    dtype: Literal["float32", "float64"] = "float32"
    min_run_time_s: float = Field(0.2, gt=0, le=60)
    loop_max_iters: int = Field(200_000, ge=0)  # Python-loop variants over this are 'capped'
    tolerance: float | None = Field(None, gt=0)  # max |err| / max(1, max|ref|); default by dtype
    threads: int = Field(1, ge=1)  # CPU threads while timing: one unless a suite says otherwise

    @property
    def baseline_variant(self) -> str:
        return self.baseline or self.variants[0]

    def cases(self) -> list:
        """The validated grid points, in the order the suite lists their values."""
        from harness.kernels import KERNELS

        family = KERNELS.get(self.kernel)
        keys = list(self.sizes)
        return [family.case(**dict(zip(keys, values)))
                for values in itertools.product(*(self.sizes[k] for k in keys))]


class LearnKernelSpec(_Spec):
    """The book's 7.2 experiment: learn the 1x2 edge-detection kernel by gradient descent."""

    kind: Literal["learn_kernel"]
    lr: float = Field(3e-2, gt=0)
    iterations: int = Field(10, ge=1, le=100_000)


class TrainSpec(_Spec):
    """Train one registered model on Fashion-MNIST with the book's recipe (SGD, cross-entropy)."""

    kind: Literal["train"]
    model: str
    model_args: dict[str, Any] = {}
    dataset: Literal["fashion_mnist"] = "fashion_mnist"
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(10, ge=1, le=10_000)
    optimizer: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    resize: tuple[int, int] | None = None  # (h, w) on the device per batch; None: 28x28
    train_limit: int | None = Field(None, ge=1)  # first N training images (smoke runs)
    val_limit: int | None = Field(None, ge=1)  # first N validation images
    target_accuracy: float | None = Field(None, gt=0, le=1)  # time_to_target_s is measured to it
    # speed options: they trade determinism for speed and are refused in strict mode
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    channels_last: bool = False
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"  # reduce-overhead: CUDA graphs
    cudnn_benchmark: bool = False

    @property
    def input_size(self) -> tuple[int, int]:
        return self.resize or (28, 28)


KINDS: dict[str, type[_Spec]] = {"kernel": KernelSpec, "learn_kernel": LearnKernelSpec, "train": TrainSpec}
Spec = Union[KernelSpec, LearnKernelSpec, TrainSpec]
SPEED_OPTIONS = {"precision": "fp32", "channels_last": False, "compile": "none", "cudnn_benchmark": False}


def check_kernel(spec: KernelSpec, where: str) -> list[tuple[str, str]]:
    """Names against the kernel registry, sizes against the family's Case model."""
    from harness.kernels import KERNELS

    if spec.kernel not in KERNELS:
        return [(f"{where}.kernel", unknown_name_message("kernel", spec.kernel, KERNELS.names()))]
    family = KERNELS.get(spec.kernel)
    known = list(family.variants)
    problems = [(f"{where}.variants[{j}]", unknown_name_message(f"variant of kernel {spec.kernel}:", v, known))
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
    if problems:
        return problems
    keys = list(spec.sizes)
    for values in itertools.product(*spec.sizes.values()):
        point = dict(zip(keys, values))
        try:
            family.case.model_validate(point)
        except ValidationError as e:
            for loc, msg in pydantic_problems(e, prefix="", model=family.case):
                problems.append((f"{where}.sizes", f"{json.dumps(point)}: {loc + ': ' if loc else ''}{msg}"))
    return problems


def check_train(spec: TrainSpec, where: str) -> list[tuple[str, str]]:
    """The model against the model registry and its factory's arguments; speed options only in
    fast mode."""
    import inspect

    from harness.models import MODELS

    problems = []
    if spec.determinism == "strict":
        for field, off in SPEED_OPTIONS.items():
            if getattr(spec, field) != off:
                problems.append((f"{where}.{field}", f"{getattr(spec, field)!r} trades determinism for speed: "
                                 f"set `determinism: fast` to use it (strict allows only {off!r})"))
    if spec.model not in MODELS:
        return problems + [(f"{where}.model", unknown_name_message("model", spec.model, MODELS.names()))]
    accepted = [n for n, p in inspect.signature(MODELS.get(spec.model)).parameters.items()
                if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]
    accepted = [n for n in accepted if n not in ("num_classes", "in_channels", "input_size")]
    for key in spec.model_args:
        if key not in accepted:
            problems.append((f"{where}.model_args.{key}", unknown_name_message(
                f"argument of model {spec.model}:", key, accepted) if accepted else
                f"model {spec.model} takes no model_args"))
    if min(spec.input_size) < 8:
        problems.append((f"{where}.resize", f"{list(spec.input_size)}: sizes below 8 pixels cannot be convolved"))
    return problems


def pydantic_problems(err: ValidationError, prefix: str, model: type[BaseModel]) -> list[tuple[str, str]]:
    """pydantic's errors as (location, message), location like `experiments[0].variants[1]`."""
    problems = []
    for e in err.errors(include_url=False):
        loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
        loc = loc.lstrip(".")
        if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
            msg = unknown_name_message("field", e["loc"][0], list(model.model_fields))
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] not in ("value_error", "assertion_error") and not isinstance(e.get("input"), (dict, list)):
                msg += f" (got {e.get('input')!r})"
        problems.append((loc, msg))
    return problems
