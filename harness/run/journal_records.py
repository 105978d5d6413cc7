"""Reading a tracking journal back (`harness sync`): run directories are copied from other
machines, so a journal is untrusted input. Every record is checked, against its op's shape
(`SHAPES`) and against the records above it, before `sync` logs anything; the writer is
harness.run.journal.
"""
from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from harness.core.kinds import NAME_PATTERN

FILE = "tracking.jsonl"

# Reading a journal back (`harness sync`). Run directories are copied from other machines, so a
# journal is untrusted input: every record is checked, against its op's shape and against the
# records above it, before `sync` logs anything.

MAX_FILE_BYTES = 256 * 2**20  # a long training run writes a few MiB; more is not a journal of ours
MAX_LINE_BYTES = 2**20  # MLflow's own limit on one logged batch is 1e6 bytes
T_MIN_MS, T_MAX_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01 .. 2100-01-01 UTC: ms, not s or us
MAX_KEY = 250  # MLflow: a param, tag or metric key (MAX_ENTITY_KEY_LENGTH); also run names, ids
MAX_STEP = 2**63 - 1  # MLflow stores steps as 64-bit integers
_MLFLOW_KEY = re.compile(r"[/\w.\- :]+")  # what MLflow accepts in a param, tag or metric key


def _key_problem(key: str) -> str | None:
    """Why MLflow would refuse `key` as a param, tag or metric name (mlflow.utils.validation)."""
    if not _MLFLOW_KEY.fullmatch(key):
        return "holds characters MLflow refuses (valid: letters, digits, _ - . / : and space)"
    if len(key) > MAX_KEY:
        return f"is {len(key)} characters long (valid: up to {MAX_KEY})"
    if posixpath.normpath(key) != key or key.startswith(("/", "..")) or key == ".":
        return "is a path MLflow refuses (valid: no leading or trailing /, no //, . or .. parts)"
    return None


def _mlflow_key(key: str) -> str:
    problem = _key_problem(key)
    if problem:
        raise ValueError(problem)
    return key


def _flat_keys(d: dict, prefix: str = ""):
    """The keys harness.track.tracking.flatten makes of `d` (nested non-empty dicts: dotted)."""
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and len(name) <= MAX_KEY:
            yield from _flat_keys(value, f"{name}.")
        else:
            yield name


def _params(d: dict) -> dict:
    seen = set()
    for key in _flat_keys(d):
        problem = _key_problem(key)
        if problem:
            raise ValueError(f"key {key[:80]!r} {problem}")
        if key in seen:
            raise ValueError(f"key {key[:80]!r} twice (once dotted, once nested)")
        seen.add(key)
    return d


def _printable(text: str) -> str:
    if not text.isprintable():
        raise ValueError("holds control characters")
    return text


def _relative_path(text: str) -> str:
    path = PurePosixPath(text)
    if "\x00" in text or path.is_absolute() or ".." in path.parts or path.parts in ((), (".",)):
        raise ValueError("is not a path inside the run directory (valid: relative to it, without `..`)")
    return text


_Ms = Annotated[int, Field(ge=T_MIN_MS, lt=T_MAX_MS)]
_Id = Annotated[str, Field(min_length=1, max_length=MAX_KEY), AfterValidator(_printable)]
_Name = Annotated[str, Field(min_length=1, max_length=MAX_KEY), AfterValidator(_printable)]
_Suite = Annotated[str, Field(pattern=NAME_PATTERN, max_length=80)]
_Params = Annotated[dict[str, Any], AfterValidator(_params)]
_Short = lambda n: Annotated[str, Field(max_length=n)]  # noqa: E731


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    t: _Ms
    id: _Id


class _Start(_Record):
    op: Literal["start"]
    suite: _Suite
    name: _Name
    params: _Params
    tags: _Params


class _StartChild(_Record):
    op: Literal["start_child"]
    name: _Name
    parent: _Id
    params: _Params
    tags: _Params


class _Resume(_Record):
    op: Literal["resume"]
    suite: _Suite


class _ResumeChild(_Record):
    op: Literal["resume_child"]


class _Dataset(_Record):
    op: Literal["dataset"]
    name: Annotated[str, Field(min_length=1, max_length=500)]  # MLflow's dataset limits
    digest: Annotated[str, Field(min_length=1, max_length=36)]
    source: _Short(60_000)  # logged as {"uri": source}, 64 KiB at most
    context: _Short(500)


class _Metrics(_Record):
    op: Literal["metrics"]
    step: Annotated[int, Field(ge=0, le=MAX_STEP)]
    metrics: dict[Annotated[str, AfterValidator(_mlflow_key)], float]  # NaN and +-inf allowed, as live


class _Artifacts(_Record):
    op: Literal["artifacts"]
    paths: list[Annotated[str, Field(max_length=4096), AfterValidator(_relative_path)]]


class _End(_Record):
    op: Literal["end"]
    status: Literal["FINISHED", "FAILED", "KILLED"]


class _Close(_Record):
    op: Literal["close"]
    id: Literal[""]


_RECORD = TypeAdapter(Annotated[Union[_Start, _StartChild, _Resume, _ResumeChild, _Dataset, _Metrics,
                                      _Artifacts, _End, _Close], Field(discriminator="op")])
_T = '"t": <ms since the epoch>'
SHAPES = {  # what each op's record is: the "(valid: ...)" of a refusal
    "start": f'{{"op": "start", {_T}, "id": <run id>, "suite": <suite name>, "name": <run name>, '
             f'"params": {{...}}, "tags": {{...}}}}',
    "start_child": f'{{"op": "start_child", {_T}, "id": <new run id>, "name": <child name>, '
                   f'"parent": <the start\'s id>, "params": {{...}}, "tags": {{...}}}}',
    "resume": f'{{"op": "resume", {_T}, "id": <the start\'s id>, "suite": <the start\'s suite>}}',
    "resume_child": f'{{"op": "resume_child", {_T}, "id": <a child\'s id>}}',
    "dataset": f'{{"op": "dataset", {_T}, "id": <run id>, "name": <str>, "digest": <str, 36 at most>, '
               f'"source": <str>, "context": <str>}}',
    "metrics": f'{{"op": "metrics", {_T}, "id": <run id>, "step": <int >= 0>, '
               f'"metrics": {{<name>: <number, NaN and Infinity allowed>}}}}',
    "artifacts": f'{{"op": "artifacts", {_T}, "id": <run id>, "paths": [<path relative to the run directory>]}}',
    "end": f'{{"op": "end", {_T}, "id": <run id>, "status": "FINISHED" | "FAILED" | "KILLED"}}',
    "close": f'{{"op": "close", {_T}, "id": ""}}',
}


def _problem(err: ValidationError, record: dict) -> str:
    """pydantic's first error as `<field> <value>: <why> (valid: <the op's shape>)`."""
    e = err.errors(include_url=False)[0]
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        op = f"op {record['op']!r} is unknown" if "op" in record else "no `op`"
        return f"{op} (valid ops: {', '.join(SHAPES)})"
    op, loc = e["loc"][0], e["loc"][1:]
    field = ".".join(str(p) for p in loc if p != "[key]")
    why = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        what = f"`{field}` is missing"
    elif e["type"] == "extra_forbidden":
        what = f"`{field}` is not a field of a `{op}` record"
    else:
        shown = repr(e["input"])
        what = f"`{field}` {shown if len(shown) <= 60 else shown[:57] + '...'}: {why}"
    if loc == ("t",):
        return f"`{op}` record: {what} (valid: ms since the epoch, from {T_MIN_MS} (2000) to {T_MAX_MS} (2100))"
    if "(valid: " in why:  # one of the checks above, which says what is valid itself
        return f"`{op}` record: {what}"
    return f"`{op}` record: {what} (valid: {SHAPES[op]})"


def _check_order(records: list[tuple[int, dict]], path: Path) -> None:
    """What one record says about the others: one `start`, first; children of it; ids started above."""
    started: dict[str, int] = {}  # run id -> the line that started it
    child_names: dict[str, int] = {}
    parent = suite = None
    for i, r in records:
        op, rid = r["op"], r["id"]

        def refuse(what: str, valid: str):
            raise ValueError(f"{path}:{i}: {what} (valid: {valid})")

        if parent is None and op != "start":
            refuse(f"the first record is `{op}`", "a journal begins with the `start` of its parent run")
        if op == "start":
            if parent is not None:
                refuse(f"a second `start` (the run started on line {started[parent]})",
                       "one `start`; `resume` continues the run")
            parent, suite, started[rid] = rid, r["suite"], i
        elif op == "start_child":
            if rid in started:
                refuse(f"`id` {rid!r} was started on line {started[rid]} already",
                       "a new run id; `resume_child` continues a run")
            if r["parent"] != parent:
                refuse(f"`parent` {r['parent']!r} is not the run the journal started", f"{parent!r}")
            if r["name"] in child_names:
                refuse(f"`name` {r['name']!r} is the name of the child started on line {child_names[r['name']]}",
                       "one child run per name")
            started[rid], child_names[r["name"]] = i, i
        elif op == "close":
            continue
        elif rid not in started:
            refuse(f"`id` {rid!r} is a run the journal never started", "the id of a `start` or `start_child` above")
        elif op == "resume" and (rid != parent or r["suite"] != suite):
            refuse(f"`resume` of {rid!r} in suite {r['suite']!r}", f"the started run {parent!r} of suite {suite!r}")
        elif op == "resume_child" and rid == parent:
            refuse(f"`resume_child` of the parent run {rid!r}", "the id of a `start_child` above")


ONE_A_LINE = "one JSON object a line"


def read_lines(run_dir: Path) -> list[tuple[int, dict]]:
    """The journal's records with their line numbers, each checked (`SHAPES`, and against the records
    above it); raises ValueError `<path>:<line>: <what> (valid: ...)` at the first bad one. A last line
    cut short by a kill (not JSON, or cut inside a UTF-8 character) is dropped."""
    path = Path(run_dir) / FILE
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {size:,} bytes (valid: a journal of {MAX_FILE_BYTES // 2**20} MiB at most)")
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    records: list[tuple[int, dict]] = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            raise ValueError(f"{path}:{i}: a line of {len(raw):,} bytes (valid: {MAX_LINE_BYTES // 2**20} MiB at most)")
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as e:  # JSON, UTF-8, a number too long or nested too deep
            if i == last:  # the process died while writing its last line
                break
            raise ValueError(f"{path}:{i}: not a JSON record ({str(e)[:100]}) (valid: {ONE_A_LINE})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{i}: a JSON {type(record).__name__}, not a record (valid: {ONE_A_LINE})")
        try:
            _RECORD.validate_python(record)
        except ValidationError as e:
            raise ValueError(f"{path}:{i}: {_problem(e, record)}") from None
        records.append((i, record))
    _check_order(records, path)
    return records


def read(run_dir: Path) -> list[dict]:
    """The journal's records, in order, checked as `read_lines` does."""
    return [record for _, record in read_lines(run_dir)]
