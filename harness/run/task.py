"""One task of a suite, run by the runner (harness.run.runner): its TaskContext, and its isolation.

    ctx = Context(tracker, child_run_id, steps, key, progress, console, run_dir, checkpoint_dir, ...)
    row = run_task(exp, task, base_row, ctx)     # the task's result row, "ok" or "failed"

A task that raises becomes a failed row (its traceback in errors.log) and the suite goes on; an
input error found late (UserError) stops the invocation instead, exit 2. Under torchrun (world size
above 1) a task failing on one process ends the run on every process (harness.run.rankfail). A row
holding a value the results schema cannot store becomes a failed row, not a lost run.
"""
from __future__ import annotations

import datetime as dt
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness.core import determinism, distributed
from harness.core.errors import UserError
from harness.run import interrupt, journal, rankfail, results, rundir


@dataclass
class Context:
    """The TaskContext (harness.core.kinds) of one task."""

    tracker: object
    run_id: str
    steps: list
    key: dict
    progress_bar: object
    console: object
    run_dir: Path
    checkpoint_dir: Path
    resume: dict | None
    data_dir: str | None
    download: bool = False
    writer: bool = True  # False: a data-parallel process other than rank 0, which writes nothing

    def log(self, metrics: dict, step: int, tracked: bool = True) -> None:
        if tracked:
            self.tracker.log_metrics(self.run_id, metrics, step=step)
        self.steps.extend(self.key | {"step": step, "metric": k, "value": v} for k, v in metrics.items())

    def progress(self, description: str, completed: float, total: float) -> None:
        interrupt.check()
        self.progress_bar.update(description, completed, total)

    def unit_done(self, done: int, seconds: float) -> None:
        self.progress_bar.unit_done(done, seconds)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def artifact(self, path) -> None:
        self.tracker.log_artifacts(self.run_id, [Path(path)])

    def dataset(self, name: str, digest: str, source: str, context: str) -> None:
        self.tracker.log_dataset(self.run_id, name, digest, source, context)


def run_task(exp, task, base, ctx) -> dict:
    spec = exp.spec
    row = base | task.fields | {"experiment": exp.id, "kind": spec.kind, "seed": spec.seed,
                                "determinism": spec.determinism,
                                "mlflow_run_id": None if journal.is_offline(ctx.run_id) else ctx.run_id,
                                "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    determinism.seed_everything(spec.seed)
    t0 = time.perf_counter()
    parallel = distributed.world().size > 1
    try:
        try:
            row |= task.run(ctx)
        except UserError:
            raise  # bad input found late (e.g. the data directory): the whole invocation stops, exit 2
        except Exception as e:  # isolation: a failing task is a failed row, the suite goes on
            error = f"out of memory: {e}" if _is_oom(e) else f"{type(e).__name__}: {e}"
            if parallel and not distributed.failed_everywhere(rundir.task_key(exp.id, row["variant"], row["size"])):
                raise rankfail.stop(exp, row, ctx, t0, error) from e  # the others wait for this one in a collective
            row |= {"status": "failed", "error": error}
            if ctx.writer:
                with open(ctx.run_dir / "errors.log", "a", encoding="utf-8") as f:
                    f.write(f"--- {exp.id} {row['variant']} {row['size']}\n{traceback.format_exc()}\n")
    except KeyboardInterrupt as e:  # also one landing while a failure above was being recorded
        if parallel and distributed.failures():  # torchrun's SIGTERM: another process failed
            raise rankfail.stop(exp, row, ctx, t0, None) from e
        raise
    row["wall_s"] = time.perf_counter() - t0
    why = results.storable(row)
    if why is not None:  # a value the results schema cannot hold: a failed row, not a lost run
        keep = {k: v for k, v in row.items() if k in results.COLUMNS and results.storable({k: v}) is None}
        row = keep | {"status": "failed", "error": f"the task's result cannot be stored ({why})"}
    return row


def _is_oom(e: Exception) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()
