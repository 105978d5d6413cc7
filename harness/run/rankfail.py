"""A task that fails under torchrun (world size above 1) ends the run on every process.

In one process a failing task is a failed row and the suite goes on. Under torchrun that cannot
be: the other processes are waiting for this one in a collective (a gradient all-reduce) of the
failed task, and would wait out the process group's timeout (distributed.TIMEOUT, 10 minutes) or
match the next experiment's collectives with the wrong ones. Unless every process fails the same
task within distributed.AGREE (then no one waits: a failed row everywhere, and the suite goes on),
the failing process records why in the process group's store (distributed.report_failure) and raises RankFailed, which ends the
command with exit 1; torchrun (every 0.1 s it looks) then sends SIGTERM to the others. Rank 0, whether
it failed itself, saw its collective break (gloo: the peer's connection closed) or got that
SIGTERM, reads the failures back and makes the task's failed row from them ("rank 1:
RuntimeError: ..."), with each failing process's traceback in errors.log; the runner's cleanup
(runner._abort) then writes the results, ends the task's MLflow run FAILED and the rest KILLED, and
the CLI prints the failure and the `--resume` command. A process blocked in a collective runs no
Python until the collective returns: one that never does (NCCL waits for its timeout) is SIGKILLed
by torchrun 30 s after the SIGTERM, and rank 0 then records nothing more than it had written.
"""
from __future__ import annotations

import time
import traceback

from harness.core import distributed
from harness.run import interrupt


def stop(exp, row: dict, ctx, t0: float, error: str | None) -> distributed.RankFailed:
    """The RankFailed that ends the run, with the task's failed row. `error`: this process's own
    failure (called inside its `except`); None: torchrun's SIGTERM after another process failed."""
    interrupt.ignore()  # first: torchrun's SIGTERM may be on its way, and recording must not be cut short
    here = distributed.world()
    mine = traceback.format_exc() if error is not None else ""
    if error is not None and not distributed.failures():  # after another's, most likely its consequence
        distributed.report_failure(here.rank, error, mine)
    failed = distributed.failures() or [{"rank": here.rank, "error": error or "stopped", "traceback": mine}]
    row = row | {"status": "failed", "error": distributed.describe(failed), "wall_s": time.perf_counter() - t0}
    if ctx.writer:
        with open(ctx.run_dir / "errors.log", "a", encoding="utf-8") as f:
            f.write(f"--- {exp.id} {row['variant']} {row['size']} (data-parallel: {here.size} processes)\n")
            for x in failed:
                f.write(f"rank {x['rank']}:\n{x['traceback'] or x['error']}\n")
            if error is not None and all(x["rank"] != here.rank for x in failed):
                f.write(f"rank {here.rank}, after that:\n{mine}\n")
    return distributed.RankFailed(failed, row=row, child=ctx.run_id)
