"""What the runner executes: each experiment kind turns its spec into tasks (units of work that
each become one results row and one MLflow child run).

    tasks_for(exp, device) -> list[Task];  finalize(exp, rows) fills cross-row columns (speedups)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol


class TaskContext(Protocol):
    """Given to `Task.run`: per-step metrics to MLflow and steps.csv, progress, the checkpoint
    directory of this task, and a checkpoint to resume from (None for a fresh start)."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def progress(self, description: str, completed: float, total: float) -> None: ...
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


def tasks_for(exp, device) -> list[Task]:
    kind = exp.spec.kind
    if kind == "kernel":
        from harness.kernels.bench import kernel_tasks

        return kernel_tasks(exp, device)
    if kind == "learn_kernel":
        from harness.kernels.bench import learn_tasks

        return learn_tasks(exp, device)
    if kind == "train":
        from harness.train.loop import train_tasks

        return train_tasks(exp, device)
    raise ValueError(f"no tasks for kind {kind!r}")


def finalize(exp, rows: list[dict]) -> None:
    if exp.spec.kind == "kernel":
        from harness.kernels.bench import add_speedups

        add_speedups(rows)
