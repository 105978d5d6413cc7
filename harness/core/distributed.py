"""Data-parallel processes: who this process is among them, and their process group.

`torchrun --nproc_per_node=G -m harness run SUITE` (or `srun torchrun ...` across nodes) starts G
processes per node and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each;
`world()` reads them (a plain run is world size 1, rank 0, no process group). `process_group()`
starts the group with NCCL on CUDA (one device per process: cuda:LOCAL_RANK) or gloo on CPU, and
on every way out (return, exception, a signal's KeyboardInterrupt) destroys it, after waiting
for the others where that cannot hang (see _barrier). Rank 0 alone writes (docs/architecture.md, "Data-parallel runs").

A task that fails on one process only cannot be isolated there: the others wait for it in a
collective. A failing process first waits a few seconds for the others to fail the same task
(`failed_everywhere`: then it is a failed row on every process, as in a single one); else it records
why in the group's key-value store (`report_failure`) and stops; torchrun then ends the others, and
rank 0 reads the failure back (`failures`) to record it (`RankFailed`).

No torch at import: `world()` reads the environment only.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import timedelta

from harness.core.errors import UserError

# NCCL settings that decide how an all-reduce is cut up and summed (its reduction order); recorded
# with strict-mode results, "unset" where NCCL chooses for itself (from the topology and sizes).
NCCL_ORDER_SETTINGS = ("NCCL_ALGO", "NCCL_PROTO", "NCCL_MIN_NCHANNELS", "NCCL_MAX_NCHANNELS", "NCCL_NTHREADS",
                       "NCCL_NVLS_ENABLE", "NCCL_COLLNET_ENABLE", "NCCL_P2P_DISABLE", "NCCL_SHM_DISABLE")
# an error on one process alone leaves the others waiting in a collective this long, then they fail
TIMEOUT = timedelta(minutes=10)
EXIT_TIMEOUT = timedelta(seconds=60)  # the barrier before leaving, when leaving on an error
BUCKET_CAP_MB = 25  # DDP's gradient buckets (its default, fixed here: the bucket sizes are part of the order)
FAILURES = "harness/failures"  # in the process group's store: how many processes failed; FAILURES/<n>: the n-th
# How long a process whose task failed waits for the others to fail the same task (then the failure is
# every process's: a failed row, the suite goes on) before it stops the run. Processes meet at every
# collective, so the same failure comes to all of them within about one training step of each other.
AGREE = timedelta(seconds=10)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl" | "gloo" once the group is started; None in a single process

    @property
    def writer(self) -> bool:
        """Only rank 0 writes the run directory, results, the journal and MLflow, and prints rows."""
        return self.rank == 0


_CURRENT = World()


def world() -> World:
    """This process's place among the data-parallel processes, as torchrun set it (and, once
    `process_group()` started, the backend); World() in a plain run."""
    if _CURRENT.backend is not None:
        return _CURRENT
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, size, local = (int(os.environ.get(n, d)) for n, d in zip(names, ("0", "1", "0")))
    except ValueError:
        raise UserError(f"{', '.join(names)}: not integers ({', '.join(repr(os.environ.get(n)) for n in names)}); "
                        f"start data-parallel runs with torchrun, which sets them") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise UserError(f"RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local}: need 0 <= RANK < WORLD_SIZE; "
                        f"start data-parallel runs with torchrun, which sets them")
    return World(rank, size, local)


class RankFailed(Exception):
    """A task failed under torchrun, on this process or another: the run stops on every process.

    `failures`: what the store holds, first failure first ({"rank", "error", "traceback"}); `row`
    and `child`: the failed task's row and its tracking run (rank 0 records them); `run_dir` and
    `rows` are set by the runner's cleanup, as for an interruption."""

    def __init__(self, failures: list[dict], row: dict | None = None, child: str | None = None):
        super().__init__(describe(failures))
        self.failures, self.row, self.child = failures, row, child
        self.run_dir, self.rows = None, 0


def describe(failures: list[dict]) -> str:
    """'rank 1: RuntimeError: ...' (each failure, first first)."""
    return "; ".join(f"rank {f['rank']}: {f['error']}" for f in failures)


def _store():
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    return dist.distributed_c10d._get_default_store()


def report_failure(rank: int, error: str, traceback: str = "") -> None:
    """Record in the process group's store that this process failed, and why; done (a round trip to
    the store) before it returns, so before this process exits and torchrun ends the others. Best
    effort: the store may be gone (torchrun ending), and the failure is on its way out anyway."""
    with contextlib.suppress(Exception):
        store = _store()
        if store is None:
            return
        n = store.add(FAILURES, 1)  # the order among processes failing at once
        key = f"{FAILURES}/{n}"
        store.set(key, json.dumps({"rank": rank, "error": error, "traceback": traceback}))
        store.check([key])  # answered by the store after the set: it is stored


def failed_everywhere(task: str, within: timedelta = AGREE) -> bool:
    """Mark `task` failed on this process, and wait up to `within` for every other process to mark it
    too: True when all did (no process is left waiting in a collective of it) and none of them
    stopped the run (report_failure: it failed alone first; the others' failures, e.g. gloo's
    "Connection closed by peer", follow from it). False when one did not in time, or the store
    cannot answer."""
    import time

    here = world()
    keys = [f"harness/failed/{task}/{r}" for r in range(here.size)]
    deadline = time.monotonic() + within.total_seconds()
    try:
        store = _store()
        if store is None:
            return False
        store.set(keys[here.rank], "1")
        # polled, not store.wait(keys, within): that one logs a socket timeout warning when it expires
        while not store.check(keys):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - the store is gone (torchrun is ending the run)
        return False
    return not failures()


def failures() -> list[dict]:
    """Failures recorded by any process of this run (report_failure), first first; [] in a single
    process, when none failed, or when the store cannot be read. Never waits for a key."""
    out = []
    with contextlib.suppress(Exception):
        store = _store()
        if store is None:
            return []
        for n in range(1, store.add(FAILURES, 0) + 1):
            key = f"{FAILURES}/{n}"
            if store.check([key]):  # one being written right now may not be there yet
                out.append(json.loads(store.get(key)))
    return out


def backend_for(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: str):
    """The process group of this run (nothing in a single process): NCCL with cuda:LOCAL_RANK on
    CUDA, gloo on CPU. On the way out, every exit path: destroy_process_group, after a barrier
    where one cannot hang (_barrier)."""
    global _CURRENT
    here = world()
    if here.size == 1:
        yield here
        return
    import torch
    import torch.distributed as dist

    backend = backend_for(device)
    kwargs = {}
    if device == "cuda":
        if here.local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK={here.local_rank}: this node has {torch.cuda.device_count()} CUDA devices; "
                            f"start at most that many processes per node (torchrun --nproc_per_node)")
        torch.cuda.set_device(here.local_rank)
        kwargs["device_id"] = torch.device("cuda", here.local_rank)
    dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
    _CURRENT = World(here.rank, here.size, here.local_rank, backend)
    how = "error"
    try:
        yield _CURRENT
        how = "ok"
    except UserError:
        how = "input"
        raise
    finally:
        try:
            _barrier(dist, backend, how)
        finally:
            _CURRENT = World()
            dist.destroy_process_group()


def _barrier(dist, backend: str, how: str) -> None:
    """Wait for every process before the group goes: always after a normal end; after an input
    error found late (every process finds it alike) only with gloo, whose monitored barrier gives up
    after EXIT_TIMEOUT. Not after a signal or a fault: a peer may be dead, or blocked in a collective
    this process left, and waiting would keep this one from exiting (torchrun ends the rest)."""
    with contextlib.suppress(Exception):  # leaving anyway: a failed barrier must not hide the real error
        if how == "ok":
            dist.barrier()
        elif how == "input" and backend == "gloo":
            dist.monitored_barrier(timeout=EXIT_TIMEOUT)


def reduction_settings() -> dict:
    """What decides the order in which the processes' gradients are summed (recorded with strict
    results; empty in a single process). NCCL: its version and the NCCL_* settings that pick the
    algorithm, protocol and channels ("unset": NCCL picks from topology and message size, the
    same way on the same machines). gloo: a ring all-reduce whose order is fixed by the world
    size, the rank order and the tensor (DDP bucket) sizes; nothing to set."""
    here = world()
    if here.backend is None:
        return {}
    out = {"world_size": here.size, "backend": here.backend, "ddp_bucket_cap_mb": BUCKET_CAP_MB}
    if here.backend == "nccl":
        import torch

        out["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
        out |= {name.lower(): os.environ.get(name, "unset") for name in NCCL_ORDER_SETTINGS}
    else:
        out["gloo_reduction"] = "ring all-reduce: order fixed by world size, rank order and bucket sizes"
    return out
