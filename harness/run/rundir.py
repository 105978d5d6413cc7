"""The run directory `<out>/<suite>/<UTC time>-<short id>/` and its resumable state.

state.json maps each task (`<experiment>/<variant>/<size>`, also its MLflow run name) to its MLflow
child run, and names the parent run, so that `run --resume DIR` continues the same MLflow runs
instead of duplicating them. It also records the shard the run is (`I/N`, `0/1` for the whole suite;
suite.yaml always holds the whole resolved suite) and whether the run finished (`finished`), which
`launch` reads to tell a finished shard from an interrupted one. Results are rewritten after every experiment, so an interrupted
invocation (even a killed one) leaves the rows of every finished experiment behind.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from harness.run import results, runfiles
from harness.core.errors import UserError
from harness.suite.shard import WHOLE, Shard, parse_shard

FINISHED = ("ok", "failed", "capped", "diverged")


@dataclass
class RunDir:
    path: Path
    run_id: str
    parent_run_id: str = ""
    children: dict[str, str] = field(default_factory=dict)
    done: dict[str, dict] = field(default_factory=dict)  # task key -> finished row (resume)
    old_steps: list[dict] = field(default_factory=list)  # per-step metrics of finished tasks (resume)
    resumed: bool = False
    tracking_uri: str = ""  # the store the MLflow runs are in ("" without tracking)
    shard: Shard = WHOLE  # the part of the suite this run runs (harness.suite.shard)
    finished: bool = False  # the runner reached the end (set before the last save_state)
    writer: bool = True  # False in data-parallel processes other than rank 0: they write nothing
    # what the runner last wrote of results, steps and report: name -> (rows, steps) it holds
    on_disk: dict[str, tuple[int, int]] = field(default_factory=dict)

    def checkpoint_dir(self, experiment_id: str) -> Path:
        return checkpoint_path(self.path, experiment_id)

    def drop_checkpoint(self, experiment_id: str) -> None:
        """A finished experiment's checkpoint only served its resume: remove it (--keep-checkpoints keeps it)."""
        import shutil

        if not self.writer:
            return
        shutil.rmtree(self.checkpoint_dir(experiment_id), ignore_errors=True)
        with contextlib.suppress(OSError):  # only if empty
            (self.path / "checkpoints").rmdir()

    def with_kept(self, rows: list[dict]) -> list[dict]:
        """The rows to write: those reached this time, plus rows an earlier invocation finished that this
        one was interrupted before reaching again (so an early interruption of a resume loses none)."""
        seen = {task_key(r["experiment"], r["variant"], r["size"]) for r in rows}
        return rows + [r for key, r in self.done.items() if key not in seen]

    def save_state(self) -> None:
        if not self.writer:
            return
        results.atomic_write_json(self.path / "state.json", {
            "run_id": self.run_id, "parent_run_id": self.parent_run_id, "children": self.children,
            "tracking_uri": redact(self.tracking_uri), "shard": str(self.shard), "finished": self.finished})


def checkpoint_path(run_dir: Path, experiment_id: str) -> Path:
    """The directory of an experiment's training checkpoint in a run directory."""
    return Path(run_dir) / "checkpoints" / experiment_id.replace("/", "_")


def new(out_root: Path, suite_name: str, shard: Shard | None = None) -> RunDir:
    run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    return RunDir(Path(out_root) / suite_name / run_id, run_id, shard=shard or WHOLE)


def reopen(path: Path, suite, shard: Shard | None = None) -> RunDir:
    """An interrupted run directory, checked against the suite it is resumed with (the whole suite:
    suite.yaml holds it whatever the shard) and the shard (None: the one it recorded)."""
    path = Path(path)
    state_file, suite_file = path / "state.json", path / "suite.yaml"
    if not state_file.exists() or not suite_file.exists():
        raise UserError(f"--resume {path}: not a run directory (no state.json / suite.yaml); give the "
                        f"directory a run printed, e.g. results/{suite.name}/<UTC time>-<id>")
    before = runfiles.read_suite(suite_file)  # every file read back validated: a damaged one is named
    if before.get("suite") != suite.name or before.get("experiments") != suite.resolved()["experiments"]:
        raise UserError(f"--resume {path}: the suite changed since that run ({suite_file} differs from "
                        f"{suite.path} as resolved now); resume with the same suite, seed and -k, or start a new run")
    state = runfiles.read_state(state_file)
    if (path / "env.json").exists():  # read again (and kept) when the resumed run writes its end
        runfiles.read_env(path / "env.json")
    run = RunDir(path, state["run_id"], state["parent_run_id"], state["children"], resumed=True,
                 tracking_uri=state.get("tracking_uri", ""),
                 shard=parse_shard(state.get("shard", "0/1"), {}, flag=f"{state_file}: shard"))
    if shard is not None and shard != run.shard:
        raise UserError(f"--shard {shard}: {path} is shard {run.shard}; resume it with --shard {run.shard} "
                        f"(or without --shard)")
    if (path / "results.parquet").exists():
        df = results.load(path)
        for row in df.to_dict("records"):
            if row["status"] in FINISHED:
                run.done[task_key(row["experiment"], row["variant"], row["size"])] = plain_row(row)
    if (path / "steps.csv").exists():
        steps = [plain_row(s) for s in runfiles.read_steps(path / "steps.csv").to_dict("records")]
        run.old_steps = [s for s in steps if task_key(s["experiment"], s["variant"], s["size"]) in run.done]
    return run


def find_under(paths: list[Path], marker: str, no_dir: str, none_below: str, is_run=None) -> list[Path]:
    """Each path that is a run directory, else every directory below it that is one (sorted): a run
    directory holds the file `marker` (and passes `is_run`, when given). `no_dir` and `none_below`
    (formatted with `path`) are the UserErrors for a path that is not a directory, or holds none."""
    is_run = is_run or (lambda d: (d / marker).is_file())
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(no_dir.format(path=path))
        if is_run(path):
            found.append(path)
            continue
        below = sorted(p.parent for p in path.rglob(marker) if is_run(p.parent))
        if not below:
            raise UserError(none_below.format(path=path))
        found += below
    return found


def recorded_state(path: Path) -> dict:
    """state.json of a run directory, or {} when it is missing or unreadable (reopen says why)."""
    try:
        return runfiles.read_state(Path(path) / "state.json")
    except UserError:
        return {}


# A directory holding one of these files is a run (or a launch): no command's --out is one, or lies in one.
RUN_MARKERS = ("state.json", "merge.json", "launch.json", "results.parquet", "results.csv", "tracking.jsonl")
OUT_KINDS = {"root": "a results root, which gets a new run directory <suite>/<UTC time>-<id>",
             "run": "a results root, which gets a new run directory <suite>/<UTC time>-merged-<id>, or a new path",
             "file": "the file to write", "dir": "the directory to write into"}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in RUN_MARKERS)


def enclosing_run(path: Path) -> Path | None:
    """The run directory `path` is or lies in (the nearest), or None. A launch's own shard roots
    (<launch>/shards/<i>) are not counted as lying in the launch: the launcher writes them there."""
    path = path.absolute()
    for p in (path, *path.parents):
        if is_run_dir(p):
            inside = path.relative_to(p).parts
            if (p / "launch.json").is_file() and inside[:1] == ("shards",) and len(inside) >= 2:
                return None
            return p
    return None


def check_out(out: Path, makes: str = "root", flag: str = "--out", example: str = "results/") -> None:
    """The one rule for every command's output path, checked before anything is created: `out` is
    `makes` (OUT_KINDS: a results root that gets a new run directory, a new path, a file, a
    directory); never a run directory or a path inside one (which it would overwrite, or hide from
    report/dashboard/merge), nor a suite directory taken for a results root (its runs would land a
    level too deep for report); never a file where a directory is meant, nor a directory where a file
    is; its nearest existing ancestor a directory this process can write. A UserError (exit 2) names
    the flag and what is valid."""
    import os

    want = f"give {OUT_KINDS[makes]} (e.g. {example})"
    if makes == "file":
        if out.is_dir():
            raise UserError(f"{flag} {out}: is a directory; {flag} names {OUT_KINDS['file']}, e.g. {out / example}")
        if out.exists() and not out.is_file():
            raise UserError(f"{flag} {out}: exists and is not a regular file; {want}")
    elif out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out}: is a file, not a directory; {want}")
    run = enclosing_run(out)
    if run is not None and run == out.absolute():
        marker = next(m for m in RUN_MARKERS if (run / m).is_file())
        raise UserError(f"{flag} {out}: is a run directory (it holds {marker}), and no command writes into one; {want}")
    if run is not None:
        raise UserError(f"{flag} {out}: is inside the run directory {run}; write outside any run directory: {want}")
    if makes in ("root", "run") and out.is_dir():
        runs = sorted(c.name for c in out.iterdir() if is_run_dir(c))
        if runs:
            raise UserError(f"{flag} {out}: is a suite directory (it holds the run directory {runs[0]}), not a results "
                            f"root; give the results root above it ({out.absolute().parent}) or a new path")
    above = out.absolute().parents if makes == "file" else (out, *out.absolute().parents)  # a file may be replaced
    existing = next((p for p in above if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {out}: {existing} is a file, not a directory; {want}")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {out}: {existing} is not writable by this user; choose another {flag}")


def check_out_root(out: Path) -> None:
    """`--out` of run, reproduce, launch, sync and check: a results root (check_out)."""
    check_out(out, "root")


def resumed_store(path: Path, tracking: bool) -> str | None:
    """Before `--resume` opens a store: the run is resumed the way it was made (tracked or not), and
    the store it was tracked in (its state.json) is the default, unless $MLFLOW_TRACKING_URI says
    otherwise or the recorded URI had its password redacted."""
    import os

    state = recorded_state(path)
    if state:
        check_tracking_mode(path, state.get("parent_run_id") or "", tracking)
    uri = state.get("tracking_uri") or None
    if os.environ.get("MLFLOW_TRACKING_URI") or not isinstance(uri, str) or "***" in uri:
        return None
    return uri


def check_tracking_mode(path: Path, parent_run_id: str, tracking: bool) -> None:
    """A run is resumed the way it was made: tracked in MLflow, or with --no-tracking."""
    offline = not parent_run_id or parent_run_id.startswith("offline:")
    if offline and tracking:
        raise UserError(f"--resume {path}: that run was made with --no-tracking; resume it with "
                        f"--no-tracking too, then log it with `python -m harness sync {path}`")
    if not offline and not tracking:
        raise UserError(f"--resume {path}: that run is tracked in MLflow (run {parent_run_id}); "
                        f"resume it without --no-tracking so the same MLflow runs are continued")


def redact(uri: str) -> str:
    """A tracking URI without its password (postgresql://user:secret@host/db -> user:***@host)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def task_key(experiment: str, variant: str, size: str) -> str:
    return f"{experiment}/{variant}/{size}"


def plain_row(row: dict) -> dict:
    """pandas NA -> None, numpy scalars -> Python, schema_version dropped (to_frame adds it)."""
    import pandas as pd

    out = {}
    for k, v in row.items():
        if k == "schema_version":
            continue
        out[k] = None if v is pd.NA or (isinstance(v, float) and v != v) else (v.item() if hasattr(v, "item") else v)
    return out
