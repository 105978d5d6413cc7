"""The launcher interface: submit a shard's command somewhere, ask its state, cancel it.

(Local copy of the interface for the cluster launchers; the launch command's branch owns this file.)
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import UserError

STATES = ("pending", "running", "done", "failed", "cancelled", "unknown")


@dataclass
class ShardJob:
    index: int
    count: int
    argv: list[str]      # the full command: [python, -m, harness, run, SUITE, --shard, i/N, --no-tracking, ...]
    cwd: Path
    log: Path            # the shard's stdout and stderr go here
    env: dict[str, str] = field(default_factory=dict)  # extra environment variables for the shard
    gpus: int = 0
    partition: str | None = None
    time_min: int | None = None


class Launcher(abc.ABC):
    name: str

    @abc.abstractmethod
    def submit(self, job: ShardJob) -> str:
        """Start the shard; a handle (a JSON-able string) that state and cancel take."""

    @abc.abstractmethod
    def state(self, handle: str) -> str:
        """One of STATES."""

    @abc.abstractmethod
    def cancel(self, handle: str) -> None:
        """Stop the shard (nothing if it has ended)."""

    def close(self) -> None:
        """Release what the launcher holds (optional)."""


LAUNCHERS = {"slurm": ("harness.scale.launchers.slurm", "SlurmLauncher"),
             "ray": ("harness.scale.launchers.ray", "RayLauncher")}


def get_launcher(name: str, **options) -> Launcher:
    if name not in LAUNCHERS:
        raise UserError(f"--launcher {name!r}: valid are {', '.join(LAUNCHERS)}")
    module, cls = LAUNCHERS[name]
    return getattr(importlib.import_module(module), cls)(**options)
