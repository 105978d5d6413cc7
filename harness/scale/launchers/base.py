"""The launcher interface: what `launch` needs to start, watch and stop one shard.

A launcher runs a `ShardJob` somewhere: its `argv` (a full `python -m harness run SUITE --shard I/N
--no-tracking --out DIR ...` command) in `cwd`, with `env` added to the environment, its stdout and
stderr appended to `log` (the launcher creates the file, or appends to it on a resubmission), asking
for `gpus` GPUs, a `partition` and a `time_min` limit where the launcher has such things.

    launcher = get_launcher("local")                 # or "slurm", "ray" (optional extras)
    handle = launcher.submit(job)                    # a string, saved in launch.json
    launcher.state(handle)                           # one of STATES
    launcher.cancel(handle)                          # ask the shard to stop (it keeps what finished)
    launcher.close()                                 # release what the launcher holds

`submit` returns a handle: a JSON-able string that names the job to this launcher (a pid for local,
a Slurm job id, a Ray task id), also from a new launcher object in another process (`launch
--resume` after the launching process died); `state` then may answer "unknown" when it cannot tell.
States: "pending" (queued), "running", "done" (ended with exit status 0), "failed" (ended
otherwise), "cancelled" (stopped by `cancel` or by the scheduler), "unknown".

The launcher's state is only what the scheduler says: whether a shard *finished* is decided by
`launch` from the shard's run directory (state.json `finished`, results), so a shard that finished
while nobody watched counts as finished, and one whose process ended early does not.

Implementations: `local.LocalLauncher` (subprocesses, here); `slurm.SlurmLauncher` (submitit,
`pip install 'harness[slurm]'`) and `ray.RayLauncher` (Ray, `pip install 'harness[ray]'`, one process
per shard) are imported only when asked for.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import UserError

STATES = ("pending", "running", "done", "failed", "cancelled", "unknown")
ENDED = ("done", "failed", "cancelled", "unknown")  # nothing more will happen


@dataclass
class ShardJob:
    index: int
    count: int
    argv: list[str]  # full command, e.g. [sys.executable, "-m", "harness", "run", SUITE, "--shard", "0/2", ...]
    cwd: Path
    log: Path  # the shard's stdout+stderr go here (the launcher creates/appends it)
    env: dict[str, str] = field(default_factory=dict)  # extra environment variables for the shard
    gpus: int = 0
    partition: str | None = None
    time_min: int | None = None


class Launcher(abc.ABC):
    name: str

    @abc.abstractmethod
    def submit(self, job: ShardJob) -> str:
        """Start the shard; return its handle (JSON-able string: pid, Slurm job id, ...)."""

    @abc.abstractmethod
    def state(self, handle: str) -> str:
        """One of STATES."""

    @abc.abstractmethod
    def cancel(self, handle: str) -> None:
        """Ask the shard to stop (SIGTERM or the scheduler's cancel); returns at once."""

    def check(self, job: ShardJob) -> None:
        """Whether the launcher would take a job like `job` (partition, time limit, GPUs), without
        submitting anything: `launch` calls it before it creates its directory. UserError if not;
        optional (the default takes everything, and `submit` says what it refuses)."""

    def close(self) -> None:
        """Release what the launcher holds (e.g. ray.shutdown); optional."""


LAUNCHERS = {"local": ("harness.scale.launchers.local", "LocalLauncher", None),
             "slurm": ("harness.scale.launchers.slurm", "SlurmLauncher", "slurm"),
             "ray": ("harness.scale.launchers.ray", "RayLauncher", "ray")}


def get_launcher(name: str, **options) -> Launcher:
    """The launcher called `name`, built with `options`; the Slurm and Ray ones are imported here
    only, and a missing optional dependency is a UserError saying what to install."""
    if name not in LAUNCHERS:
        raise UserError(f"--launcher {name}: unknown launcher (valid: {', '.join(LAUNCHERS)})")
    module_name, cls, extra = LAUNCHERS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise UserError(f"--launcher {name}: not part of this harness installation ({module_name} is "
                            f"missing); valid here: local") from None
        if extra is None or (e.name or "").startswith("harness"):
            raise
        raise UserError(f"--launcher {name} needs {e.name}, which is not installed: "
                        f"pip install 'harness[{extra}]'") from None
    return getattr(module, cls)(**options)
