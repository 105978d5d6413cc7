"""Shards: a deterministic, disjoint part of a suite's expanded experiment list.

    shard = parse_shard("1/4", os.environ)      # or "auto": $SLURM_ARRAY_TASK_ID / $SLURM_ARRAY_TASK_COUNT
    shard.select(suite.experiments)             # the experiments this shard runs

The rule: the j-th experiment of the expanded, selected list (matrix expanded, `-k` and `--seed`
applied, in the suite's order) goes to shard j % N. Round-robin rather than contiguous blocks, so
that a suite listing small experiments before large ones spreads the large ones over the shards.
The N shards are disjoint and their union is the list (`0/1` is the whole suite); a shard may be
empty when N exceeds the experiments (it then runs nothing and writes an empty results table).

With `auto` (a Slurm job array: `sbatch --array=0-3`), I and N come from Slurm's variables:
I = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP (MIN 0 and STEP 1 when
unset) and N = SLURM_ARRAY_TASK_COUNT, so `--array=1-4` works as well as `--array=0-3`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from harness.core.errors import UserError

T = TypeVar("T")
# ASCII digits only: \d alone also matches other scripts' digits ('１/２' would be shard 1 of 2)
PATTERN = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", re.ASCII)
INTEGER = re.compile(r"\s*-?[0-9]+\s*", re.ASCII)  # a Slurm variable: int() alone takes '１', '1_0', '+1'
SLURM_ID, SLURM_COUNT = "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"


@dataclass(frozen=True)
class Shard:
    index: int  # 0 <= index < count
    count: int

    def __post_init__(self):
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"not a shard: {self.index}/{self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    def select(self, experiments: Sequence[T]) -> list[T]:
        """The experiments of this shard: the j-th goes to shard j % count (see the module)."""
        return [e for j, e in enumerate(experiments) if j % self.count == self.index]


WHOLE = Shard(0, 1)
VALID = "give I/N with 0 <= I < N (e.g. 0/4 for the first of four shards), or auto inside a Slurm job array"


def parse_shard(text: str, environ: Mapping[str, str], flag: str = "--shard") -> Shard:
    """`I/N` or `auto` -> Shard; anything else is a UserError naming `flag` (exit 2)."""
    if text.strip() == "auto":
        return _from_slurm(environ, flag)
    m = PATTERN.fullmatch(text)
    if not m:
        digits = "; I and N are written in ASCII digits 0-9" if any(c.isdigit() and not c.isascii() for c in text) else ""
        raise UserError(f"{flag} {text}: not a shard{digits}; {VALID}")
    index, count = int(m[1]), int(m[2])
    if count < 1:
        raise UserError(f"{flag} {text}: the number of shards N must be at least 1; {VALID}")
    if index >= count:
        raise UserError(f"{flag} {text}: shard index {index} is not below the number of shards {count} "
                        f"(shards are numbered 0 to {count - 1}); {VALID}")
    return Shard(index, count)


def _from_slurm(environ: Mapping[str, str], flag: str) -> Shard:
    values = {}
    for name, default in ((SLURM_ID, None), (SLURM_COUNT, None), ("SLURM_ARRAY_TASK_MIN", "0"),
                          ("SLURM_ARRAY_TASK_STEP", "1")):
        raw = environ.get(name, default)
        if raw is None:
            raise UserError(f"{flag} auto: ${name} is not set; auto takes the shard from a Slurm job array "
                            f"(sbatch --array=0-3 ...), which sets {SLURM_ID} and {SLURM_COUNT}; "
                            f"outside one, give --shard I/N")
        if not INTEGER.fullmatch(raw):
            raise UserError(f"{flag} auto: ${name}={raw!r} is not an integer (ASCII digits)")
        values[name] = int(raw)
    task, count = values[SLURM_ID], values[SLURM_COUNT]
    first, step = values["SLURM_ARRAY_TASK_MIN"], max(1, values["SLURM_ARRAY_TASK_STEP"])
    index, rest = divmod(task - first, step)
    if count < 1 or rest or not 0 <= index < count:
        raise UserError(f"{flag} auto: the Slurm array task {task} (min {first}, step {step}, count {count}) "
                        f"is not one of {count} evenly spaced tasks; submit a plain range such as "
                        f"--array=0-{max(count, 1) - 1}, or give --shard I/N")
    return Shard(index, count)
