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
import time
from pathlib import Path

from harness.run.journal_records import FILE, read, read_lines  # noqa: F401 (the journal's reader)

OFFLINE = "offline:"


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_offline(run_id: str) -> bool:
    return run_id.startswith(OFFLINE)


def open_runs(records: list[dict]) -> list[str]:
    """The ids of the runs still open after `records` (a journal as `read` returns it)."""
    open_ids: dict[str, None] = {}
    for r in records:
        if r["op"] in ("start", "start_child", "resume", "resume_child"):
            open_ids[r["id"]] = None
        elif r["op"] == "end":
            open_ids.pop(r["id"], None)
        elif r["op"] == "close":
            open_ids.clear()
    return list(open_ids)


def close_dead(run_dir: Path) -> bool:
    """The `close` a run's process would have written, for one known to be dead (killed outright, so
    its journal ends with runs open): appended now, so that every sync ends those runs KILLED. A
    last line cut short by the kill (which the reader drops) is cut off first. False, and nothing
    written, when no run is open or the journal is not readable (sync says why later)."""
    path = Path(run_dir) / FILE
    try:
        if not open_runs(read(run_dir)):
            return False
        data = path.read_bytes()
    except (OSError, ValueError):
        return False
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"op": "close", "t": _now_ms(), "id": ""}) + "\n")
    return True


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
        self.close_error: OSError | None = None  # the close line could not be written (a full disk)

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
        """Every run still open ends KILLED: in the inner tracker if it can, in the journal if its disk
        takes the line. Never raises (it runs on the way out of a failure): what it could not end is in
        the inner tracker's `unclosed` (MlflowTracker) and in `close_error` (the journal's line)."""
        t = _now_ms()
        try:
            self._guard("close", self.inner.close)
        finally:
            if self.path.exists():  # only a run that started has anything to close
                try:
                    self._write("close", "", t)
                except OSError as e:  # a full disk: `run --resume` still continues the runs
                    self.close_error = e

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
