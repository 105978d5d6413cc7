"""What an experiment kind is, in one place: the registry every kind registers into.

A kind (kernel, learn_kernel, train) is registered by its own package, in that package's
`kind.py` (harness/kernels/kind.py, harness/train/kind.py), as a `Kind`:

    spec      its frozen pydantic model (a SpecBase: name, seed, determinism, and its own fields)
    check     load-time checks that need registries (names, variants, sizes): (location, message)s
    tasks     how an experiment becomes Tasks (each one results row and one MLflow child run)
    finalize  cross-row columns once every task of an experiment has run (speedups)
    describe  for `harness list`: (results rows it will make, one line saying what it does)
    estimate  before it runs: its Work (units of work and their estimated seconds on a device),
              for `list`, `run`'s estimate and the progress bars (harness.run.estimate)

Suite loading (harness.suite) imports every `harness.<package>.kind` module it finds and looks a
kind up by name; the runner (harness.run) asks the kind for its tasks and finaliser. Adding a
kind is adding a package (or a kind.py) that registers one; nothing else changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError

from harness.core.registry import Registry, unknown_name_message

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"Input should be a valid number (got {value!r})")
    return value


# Numbers as a suite gives them: pydantic's lax mode takes YAML's true as 1. An integer field is
# strict (no true, no '3', no 2.0); a float field refuses only booleans, because PyYAML reads YAML
# 1.1, where 1e-3 (no dot) is a string: lax parsing makes it the number the user meant. An integer
# is a valid float (lr: 1).
Int = Annotated[int, Strict()]
Float = Annotated[float, BeforeValidator(_not_a_bool)]
Problems = list[tuple[str, str]]


class SpecBase(BaseModel):
    """The fields every experiment has; a kind's spec model adds its own and `kind: Literal[...]`."""

    # allow_inf_nan=False: every float field of every kind is finite (YAML's .nan and .inf refused)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=NAME_PATTERN, max_length=80)
    seed: Int = Field(0, ge=0, lt=2**63)  # an Int64 results column
    determinism: Literal["strict", "fast"] = "strict"


class TaskContext(Protocol):
    """Given to `Task.run`: per-step metrics to MLflow and steps.csv, progress, the checkpoint
    directory of this task, and a checkpoint to resume from (None for a fresh start)."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def progress(self, description: str, completed: float, total: float) -> None: ...
    def unit_done(self, done: int, seconds: float) -> None: ...  # `done` units of the task's Work finished
    def artifact(self, path) -> None: ...
    def dataset(self, name: str, digest: str, source: str, context: str) -> None: ...

    checkpoint_dir: Any
    resume: Any


@dataclass(frozen=True)
class Task:
    """One unit of work: its row fields known in advance, MLflow params, and `run(ctx)` which
    returns the measured row fields (status, times, ...)."""

    fields: dict
    params: dict
    run: Callable[[TaskContext], dict]


@dataclass(frozen=True)
class Work:
    """What an experiment will cost before it runs: per task (in the order of `tasks`), the
    estimated seconds of each of its units of work (a training's epochs, a kernel row), plus a
    fixed cost per task (building, data, plots). `rate`: the FLOP/s the unit seconds were derived
    from, None when they come from the spec alone; the runner corrects rated work by what it measures
    (harness.run.estimate)."""

    unit: str  # "epoch", "row"
    tasks: tuple[tuple[float, ...], ...]
    overhead_s: float = 0.0
    rate: float | None = None

    @property
    def seconds(self) -> float:
        return sum(map(sum, self.tasks)) + self.overhead_s * len(self.tasks)


def _no_problems(spec, where: str) -> Problems:
    return []


def _nothing_to_finalize(exp, rows: list[dict]) -> None:
    return None


def _one_row(spec) -> tuple[int, str]:
    return 1, ""


def _unknown_cost(spec, device) -> Work:
    return Work("task", ((0.0,),))  # no estimate for this kind


@dataclass(frozen=True)
class Kind:
    name: str
    spec: type[SpecBase]
    tasks: Callable[[Any, Any], list[Task]]  # (experiment, torch.device) -> tasks
    check: Callable[[SpecBase, str], Problems] = _no_problems
    finalize: Callable[[Any, list[dict]], None] = _nothing_to_finalize
    describe: Callable[[SpecBase], tuple[int, str]] = _one_row
    estimate: Callable[[SpecBase, Any], Work] = _unknown_cost  # (spec, torch.device) -> Work


KINDS: Registry[Kind] = Registry("experiment kind")


def register_kind(kind: Kind) -> Kind:
    return KINDS.register(kind.name, kind)


def pydantic_problems(err: ValidationError, prefix: str, model: type[BaseModel]) -> Problems:
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
