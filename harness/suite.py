"""YAML suite -> validated, frozen experiment specs, with matrix expansion.

Everything a suite can get wrong is found here, before anything runs, and reported as
`suites/x.yaml: experiments[0].variants[1]: unknown variant 'vectorised' ...` (exit 2).

    suite = load_suite("suites/kernels.yaml", seed=None, select="corr")
    for exp in suite.experiments: exp.id, exp.spec, exp.point
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UserError
from harness.registry import unknown_name_message

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_ERRORS_SHOWN = 8


class SuiteError(UserError):
    """Every problem found in one suite file, one `file: location: message` line each."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path, self.problems = str(path), problems
        lines = [f"{self.path}: {loc}: {msg}" if loc else f"{self.path}: {msg}" for loc, msg in problems]
        if len(lines) > MAX_ERRORS_SHOWN:
            lines = lines[:MAX_ERRORS_SHOWN] + [f"... and {len(lines) - MAX_ERRORS_SHOWN} more"]
        super().__init__("\n".join(lines))


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
    threads: int | None = Field(None, ge=1)  # CPU threads while timing; default: torch's

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
    compile: Literal["none", "default", "max-autotune"] = "none"
    cudnn_benchmark: bool = False

    @property
    def input_size(self) -> tuple[int, int]:
        return self.resize or (28, 28)


KINDS: dict[str, type[_Spec]] = {"kernel": KernelSpec, "learn_kernel": LearnKernelSpec, "train": TrainSpec}
Spec = Union[KernelSpec, LearnKernelSpec, TrainSpec]
SPEED_OPTIONS = {"precision": "fp32", "channels_last": False, "compile": "none", "cudnn_benchmark": False}


class _SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = Field(pattern=NAME_PATTERN, max_length=80)
    description: str = ""
    defaults: dict[str, Any] = {}
    experiments: list[dict[str, Any]] = Field(min_length=1)
    matrix: dict[str, list[Any]] = {}


@dataclass(frozen=True)
class Experiment:
    """One expanded experiment: a spec at one matrix point."""

    id: str  # "corr2d", or "corr2d[seed=1]" under a matrix
    spec: Spec
    point: dict[str, Any]

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.spec.model_dump_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    experiments: list[Experiment]

    def resolved(self) -> dict:
        """The suite as it will run: every default applied, the matrix expanded."""
        return {"suite": self.name, "description": self.description, "source": str(self.path),
                "experiments": [{"id": e.id, **e.spec.model_dump(mode="json")} for e in self.experiments]}


def load_suite(path: str | Path, *, seed: int | None = None, select: str | None = None) -> Suite:
    """Read, validate and expand a suite. `seed` overrides every experiment's seed (and replaces
    a `seed` axis of the matrix); `select` keeps experiments whose name contains it."""
    path = Path(path)
    raw = _read_yaml(path)
    try:
        top = _SuiteFile.model_validate(raw)
    except ValidationError as e:
        raise SuiteError(path, _pydantic_problems(e, prefix="", model=_SuiteFile)) from None
    if seed is not None and seed < 0:
        raise UserError(f"--seed {seed}: a seed must be >= 0")

    problems = _check_names(top) + _check_keys(top)
    experiments: list[Experiment] = []
    matrix = {k: v for k, v in top.matrix.items() if not (seed is not None and k == "seed")}
    for i, exp in enumerate(top.experiments):
        if select and select not in str(exp.get("name", "")):
            continue
        where = f"experiments[{i}]"
        kind = exp.get("kind")
        if kind not in KINDS:
            problems.append((f"{where}.kind", "missing" if kind is None else unknown_name_message("kind", kind, list(KINDS))))
            continue
        model = KINDS[kind]
        base = {k: v for k, v in top.defaults.items() if k in model.model_fields} | exp
        axes = {k: v for k, v in matrix.items() if k in model.model_fields}
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            fields = base | point | ({"seed": seed} if seed is not None else {})
            spec, errs = _validate_one(model, fields, where, point)
            problems += errs
            if spec is not None:
                label = ",".join(f"{k}={v}" for k, v in point.items())
                experiments.append(Experiment(f"{spec.name}[{label}]" if point else spec.name, spec, point))
    if problems:
        raise SuiteError(path, _dedupe(problems))
    if not experiments:
        names = ", ".join(str(e.get("name")) for e in top.experiments)
        raise UserError(f"{path}: -k {select!r} selects no experiment (names: {names})")
    return Suite(path, top.suite, top.description, experiments)


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise UserError(f"{path}: no such file (suites live in suites/, e.g. suites/kernels.yaml)")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a suite file, e.g. {path / 'kernels.yaml'}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    try:
        raw = yaml.safe_load(text)  # safe_load: a suite can never construct Python objects
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        raise UserError(f"{path}:{mark.line + 1}:{mark.column + 1}: YAML tags that construct objects "
                        f"are not allowed ({e.problem})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if raw is None:
        raise UserError(f"{path}: the file is empty; a suite needs `suite:` and `experiments:` "
                        f"(see suites/kernels.yaml)")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a suite is a YAML mapping with `suite:` and `experiments:`, "
                        f"not a {type(raw).__name__}")
    return raw


def _check_names(top: _SuiteFile) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    problems = []
    for i, exp in enumerate(top.experiments):
        name = exp.get("name")
        if isinstance(name, str) and name in seen:
            problems.append((f"experiments[{i}].name", f"duplicate experiment name {name!r} "
                             f"(first used by experiments[{seen[name]}])"))
        seen.setdefault(name, i)
    return problems


def _check_keys(top: _SuiteFile) -> list[tuple[str, str]]:
    """`defaults` and `matrix` keys must be fields of some experiment kind used in the suite."""
    kinds = {e.get("kind") for e in top.experiments} & set(KINDS)
    fields = sorted({f for k in kinds for f in KINDS[k].model_fields} - {"kind", "name"})
    problems = []
    for section in ("defaults", "matrix"):
        for key in getattr(top, section):
            if key not in fields:
                problems.append((f"{section}.{key}", f"not a field of any experiment in this suite "
                                 f"(fields: {', '.join(fields)})"))
    for key, values in top.matrix.items():
        if not values:
            problems.append((f"matrix.{key}", "an axis needs at least one value"))
    return problems


def _validate_one(model: type[_Spec], fields: dict, where: str, point: dict):
    suffix = f" (matrix point {point})" if point else ""
    try:
        spec = model.model_validate(fields)
    except ValidationError as e:
        return None, [(loc, msg + suffix) for loc, msg in _pydantic_problems(e, prefix=where, model=model)]
    check = {KernelSpec: _check_kernel, TrainSpec: _check_train}.get(type(spec))
    errs = check(spec, where) if check else []
    return (None if errs else spec), errs


def _check_kernel(spec: KernelSpec, where: str) -> list[tuple[str, str]]:
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
            for loc, msg in _pydantic_problems(e, prefix="", model=family.case):
                problems.append((f"{where}.sizes", f"{json.dumps(point)}: {loc + ': ' if loc else ''}{msg}"))
    return problems


def _check_train(spec: TrainSpec, where: str) -> list[tuple[str, str]]:
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


def _pydantic_problems(err: ValidationError, prefix: str, model: type[BaseModel]) -> list[tuple[str, str]]:
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


def _dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))
