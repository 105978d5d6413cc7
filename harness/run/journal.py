"""The tracking journal: every tracker call of a run, appended to `<run dir>/tracking.jsonl`.

`run` always wraps its tracker (MLflow, or none with `--no-tracking`) in a `Journal`, so every run
directory holds a complete, timestamped record of what was (or would have been) logged: the
parent and child runs with their names, params and tags, datasets, per-epoch metrics with their
steps, artifacts and end statuses. `python -m harness sync RUN_DIR` (harness.track.sync) replays it into
an MLflow store later, with the original timestamps: GPU nodes that cannot reach a tracking server,
or lack mlflow, run offline and are synced from a machine that can. No mlflow import here.

One JSON object per line, `op` plus `t` (ms since the epoch) and `id` (the run the call is about):

    start        suite, name, params, tags            open the parent run
    start_child  name, parent, params, tags           open a child run of `parent`
    resume       suite                                continue the parent (`run --resume`)
    resume_child                                      continue a child
    dataset      name, digest, source, context        an MLflow dataset input
    metrics      step, metrics                        metrics at one step
    artifacts    paths                                files/dirs inside the run dir, relative to it
    end          status                               FINISHED | FAILED | KILLED
    close                                             every run still open ends KILLED (Ctrl-C, crash)

Run ids are the wrapped tracker's (MLflow run ids), or `offline:<run name>` without tracking: a run
name is unique within its run directory (the parent's is the run directory's name, a child's the
task key), so the ids in state.json still tell the runs apart when `--resume` continues them.
"""
from __future__ import annotations

import json
import posixpath
import re
import time
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from harness.core.kinds import NAME_PATTERN

FILE = "tracking.jsonl"
OFFLINE = "offline:"


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_offline(run_id: str) -> bool:
    return run_id.startswith(OFFLINE)


class Journal:
    """A tracker that appends each call to `<run_dir>/tracking.jsonl`, then passes it on to `inner`.

    Opening the parent (`start`, `resume`) calls the inner tracker first: if that fails (an
    unreachable server), nothing is journaled and the journal does not create the run directory.
    Once the run is open, a failing inner call (the store locked, the server gone, an artifact store
    full) no longer stops anything: it is journaled all the same, warned about once on stderr and
    counted in `failures`, so a finished task never becomes a failed row for a tracking error and
    `harness sync RUN_DIR` can log it all later. Each line is flushed at once, so a killed process
    leaves every call it made on disk.
    """

    def __init__(self, inner, run_dir: Path):
        self.inner = inner
        self.path = Path(run_dir) / FILE
        self._parent = ""  # the parent's id here (the inner tracker's, or offline:<name>)
        self.failures: list[str] = []  # inner calls that raised, "op: error"

    tracking_uri = property(lambda self: self.inner.tracking_uri)
    experiment_id = property(lambda self: self.inner.experiment_id)
    parent_run_id = property(lambda self: self._parent)

    def start(self, suite: str, run_name: str, params: dict, tags: dict) -> str:
        t = _now_ms()
        run_id = self.inner.start(suite, run_name, params, tags) or OFFLINE + run_name
        self._parent = run_id
        self._write("start", run_id, t, suite=suite, name=run_name, params=params, tags=tags)
        return run_id

    def start_child(self, name: str, params: dict, tags: dict) -> str:
        t = _now_ms()
        run_id = self._guard("start_child", self.inner.start_child, name, params, tags) or OFFLINE + name
        self._write("start_child", run_id, t, name=name, parent=self.parent_run_id, params=params, tags=tags)
        return run_id

    def resume(self, suite: str, parent_run_id: str) -> str:
        t = _now_ms()
        self.inner.resume(suite, self._inner_id(parent_run_id))
        self._parent = parent_run_id
        self._write("resume", parent_run_id, t, suite=suite)
        return parent_run_id

    def resume_child(self, run_id: str) -> str:
        t = _now_ms()
        self._guard("resume_child", self.inner.resume_child, self._inner_id(run_id))
        self._write("resume_child", run_id, t)
        return run_id

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, context: str) -> None:
        t = _now_ms()
        self._guard("dataset", self.inner.log_dataset, self._inner_id(run_id), name, digest, source, context)
        self._write("dataset", run_id, t, name=name, digest=digest, source=source, context=context)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        t = _now_ms()
        self._guard("metrics", self.inner.log_metrics, self._inner_id(run_id), metrics, step=step)
        kept = {k: float(v) for k, v in metrics.items() if v is not None}
        self._write("metrics", run_id, t, step=step or 0, metrics=kept)

    def log_artifacts(self, run_id: str, paths: list[Path]) -> None:
        t = _now_ms()
        self._guard("artifacts", self.inner.log_artifacts, self._inner_id(run_id), paths)
        self._write("artifacts", run_id, t, paths=[self._relative(p) for p in paths])

    def end(self, run_id: str, status: str) -> None:
        t = _now_ms()
        self._guard("end", self.inner.end, self._inner_id(run_id), status)
        self._write("end", run_id, t, status=status)

    def close(self) -> None:
        """Every run still open ends KILLED: in the inner tracker if it can, in the journal always."""
        t = _now_ms()
        try:
            self._guard("close", self.inner.close)
        finally:
            if self.path.exists():  # only a run that started has anything to close
                self._write("close", "", t)

    def _guard(self, op: str, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - tracking must not fail the run; the journal keeps the call
            import sys

            if not self.failures:
                print(f"warning: tracking failed ({op}: {type(e).__name__}: {e}); carrying on, the journal "
                      f"keeps every call: `python -m harness sync {self.path.parent}` logs it later",
                      file=sys.stderr)
            self.failures.append(f"{op}: {type(e).__name__}: {e}")
            return None

    def _inner_id(self, run_id: str) -> str:
        return "" if is_offline(run_id) else run_id

    def _relative(self, path) -> str:
        """The path relative to the run directory; one outside it is refused (ValueError): `sync`
        reads artifacts only from inside a run directory, and the runner logs nothing else."""
        resolved, root = Path(path).resolve(), self.path.parent.resolve()
        if root not in resolved.parents:
            raise ValueError(f"artifact {path} is not inside the run directory {root}; "
                             f"only files in the run directory are logged")
        return resolved.relative_to(root).as_posix()

    def _write(self, op: str, run_id: str, t: int, **fields) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"op": op, "t": t, "id": run_id, **fields}, default=str)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


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
