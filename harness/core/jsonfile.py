"""Reading a JSON file within limits: strict JSON (no duplicate key, UTF-8), bounded in size and
nesting, every problem a UserError naming the file.

    doc = read_json(Path("env.json"), what="an env.json", max_bytes=16 << 20, max_depth=16)

`json.loads` alone lets through what a damaged or hostile file holds: a duplicate key keeps the
last value silently, nesting 100,000 levels deep recurses into a RecursionError, a file of
gigabytes is read whole. Used by every file the harness reads back (the gate's baseline files,
a run directory's env.json and state.json: harness.run.runfiles).
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.core.errors import UserError


def read_json(path: Path, *, what: str, max_bytes: int, max_depth: int, nests: int | None = None,
              hint: str = "") -> object:
    """The JSON document in `path`, within `max_bytes` and `max_depth`, duplicate keys refused: a
    UserError `<path>: ...` naming `what` the file should be for anything else (`nests`: how deep
    such a file nests, said when it is too deep; `hint` appended: what to do)."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(max_bytes + 1)  # no further: a FIFO or /dev/zero cannot hang it
    except OSError as e:
        raise UserError(f"{path}: cannot read it: {e.strerror or e}{hint}") from None
    if len(data) > max_bytes:
        raise UserError(f"{path}: larger than {size_text(max_bytes)}, the most {what} may be{hint}")
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_unique)
    except RecursionError:  # nested so deep that the parser gave up: what deeper_than says of less
        doc = _TOO_DEEP
    except ValueError as e:  # JSON, UTF-8, a duplicate key, a number too long for Python
        raise UserError(f"{path}: not {what} (not readable JSON: {str(e)[:200]}){hint}") from None
    if doc is _TOO_DEEP or deeper_than(doc, max_depth):
        nest = f" (one nests {nests})" if nests else ""
        raise UserError(f"{path}: nested deeper than {max_depth} levels, not {what}{nest}{hint}")
    return doc


def check_file(path: Path, limit: int, what: str) -> None:
    """`path` is a regular file of at most `limit` bytes, else a UserError naming it (`what` it should be)."""
    if not path.exists():
        raise UserError(f"{path}: no such file; the run directory is incomplete")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file, not {what}")
    size = path.stat().st_size
    if size > limit:
        raise UserError(f"{path}: {size:,} bytes, larger than {size_text(limit)}, the most {what} may be")


_TOO_DEEP = object()


def size_text(n: int) -> str:
    """A byte bound as people write it: 16 MiB, 64 KiB, 100 bytes."""
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} bytes"


def _unique(pairs: list[tuple[str, object]]) -> dict:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {dup!r} in one object")
    return doc


def deeper_than(doc: object, limit: int) -> bool:
    """Whether lists and objects nest deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False
