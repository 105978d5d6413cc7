"""`python -m harness sync RUN_DIR`: log a run directory into MLflow after the fact.

Replays the run's tracking journal (harness.run.journal, `tracking.jsonl`) through the same
MlflowTracker that live tracking uses, with the journal's timestamps, so that a run made with
`--no-tracking` (on a GPU node that reaches no server) looks in MLflow as if it had been tracked
live: the same experiment, parent and child runs and names, params, tags, datasets, metrics with
their steps and times, artifacts, statuses and start/end times.

Idempotent: runs are recognised by name (the parent's is the run directory's name, a child's its
task key under that parent). A run that already exists with the journal's final status is left
alone; one that exists unfinished (a sync that was interrupted, or a run resumed since) is logged
into again, and MLflow drops what it already holds (identical metrics, params and dataset inputs;
artifacts are overwritten with the same files). Syncing twice creates nothing new.

Run directories are copied from other machines, so what they hold is untrusted: every run
directory given is checked before anything is logged (before the store is opened): each journal
record against its op's shape and the records above it (harness.run.journal.read_lines: fields and
types, ids the journal started, MLflow's key rules, sane timestamps), every artifact a regular file
or directory inside the run directory through every link (`_check_artifacts`: nothing absolute, no
`..`, no link out, at any part of the path or inside a logged directory), the results files
readable. A refusal names the journal's line and what is valid, and leaves the store as it was.

The results files of an offline run get the MLflow child run ids (atomically), before they are
logged as artifacts, as live tracking would have written them; ids already there are kept.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.run import interrupt, journal, results, rundir
from harness.core.errors import UserError


@dataclass
class SyncOutcome:
    run_dir: Path
    suite: str
    parent_run_id: str
    created: list[str] = field(default_factory=list)  # run names created in MLflow
    updated: list[str] = field(default_factory=list)  # existing, unfinished: logged into again
    unchanged: list[str] = field(default_factory=list)  # existing with the final status already


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Each path that holds a journal, or else every directory under it that does (sorted)."""
    return rundir.find_under(
        paths, journal.FILE,
        no_dir="sync {path}: no such directory; give a run directory (results/<suite>/<UTC time>-<id>) or a "
               "folder of them",
        none_below=f"sync {{path}}: no {journal.FILE} in it or below it; it is not a run directory (or it was "
                   f"written by a harness older than the tracking journal)")


@dataclass
class Plan:
    """A run directory checked for `sync_run_dir`: its journal's records, per run id its name, parent
    id and final status, and its results table (None without results files)."""
    run_dir: Path
    records: list[dict]
    runs: dict[str, dict]
    suite: str
    results: object = None


def check_run_dir(run_dir: Path) -> Plan:
    """Everything sync reads from a run directory, checked before anything is logged (run directories
    come from other machines): every journal record (harness.run.journal.read_lines), every artifact
    inside the run directory (`_check_artifacts`), the results files readable."""
    run_dir = Path(run_dir)
    path = run_dir / journal.FILE
    _check_inside(run_dir, path, f"{path}: a link to")
    try:
        numbered = journal.read_lines(run_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"{e}; nothing was synced") from None
    records = [r for _, r in numbered]
    runs: dict[str, dict] = {}
    for r in records:
        op = r["op"]
        if op in ("start", "start_child"):
            runs[r["id"]] = {"name": r["name"], "parent": r.get("parent"), "status": "RUNNING"}
        elif op in ("resume", "resume_child"):
            runs[r["id"]]["status"] = "RUNNING"
        elif op == "end":
            runs[r["id"]]["status"] = r["status"]
        elif op == "close":
            for run in runs.values():
                if run["status"] == "RUNNING":
                    run["status"] = "KILLED"
    if not records:
        raise UserError(f"sync {run_dir}: {journal.FILE} has no `start` record; the run never started")
    suite = records[0]["suite"]  # read_lines: the first record is the one `start`
    for run in runs.values():
        run["suite"] = suite
    _check_artifacts(run_dir, path, [(i, r) for i, r in numbered if r["op"] == "artifacts"])
    return Plan(run_dir, records, runs, suite, _results(run_dir))


def _check_inside(run_dir: Path, path: Path, what: str) -> Path:
    """`path` resolved (links followed); a UserError if that is not inside the run directory."""
    root = run_dir.resolve()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a loop of links
        raise UserError(f"{what} itself, through a loop of links (valid: files inside the run directory "
                        f"{root}); nothing was synced") from None
    if root not in resolved.parents:
        raise UserError(f"{what} {resolved}, not inside the run directory {root} (valid: files inside it; "
                        f"a link out of a run directory is refused); nothing was synced")
    return resolved


def _check_artifacts(run_dir: Path, path: Path, records: list[tuple[int, dict]]) -> None:
    """Each artifact is a regular file or a directory inside the run directory, through every link
    (of the path's own parts, and of every file and folder in a logged directory, which MLflow copies
    following links); journal.read_lines has refused absolute paths and `..` already."""
    missing: list[str] = []
    for i, r in records:
        for rel in r["paths"]:
            where = f"{path}:{i}: artifact {rel!r}"
            resolved = _check_inside(run_dir, run_dir / rel, f"{where} resolves to")
            if resolved.is_dir():
                for folder, dirs, files in os.walk(resolved):  # as MLflow walks it: links not entered
                    for name in dirs + files:
                        shown = Path(rel) / Path(folder, name).relative_to(resolved)
                        _check_inside(run_dir, Path(folder, name), f"{where} holds {shown}, a link to")
                    missing += [f"{Path(rel) / Path(folder, name).relative_to(resolved)} (not a regular file)"
                                for name in files if not Path(folder, name).is_file()]  # a fifo, a dead link
            elif not resolved.is_file():
                missing.append(f"{rel} (not a regular file)" if resolved.exists() else rel)
    if missing:  # checked before anything is logged: an incomplete copy is not half-synced
        raise UserError(f"sync {run_dir}: the journal logs artifacts that are not in the run directory: "
                        f"{', '.join(sorted(missing)[:5])}{' ...' if len(missing) > 5 else ''}; "
                        f"copy the whole run directory")


def _results(run_dir: Path):
    """The run's results table (None without results files), read before anything is logged."""
    files = [run_dir / n for n in ("results.parquet", "results.csv") if (run_dir / n).exists()
             or (run_dir / n).is_symlink()]
    if not files:
        return None
    for f in files:
        _check_inside(run_dir, f, f"{f}: a link to")
    try:
        return results.load(run_dir)  # validated whole: damaged, foreign or a wrong type is a UserError
    except UserError as e:
        raise UserError(f"{e}; nothing was synced") from None


def sync_run_dir(run_dir: Path, tracker, plan: Plan | None = None) -> SyncOutcome:
    """Replay one run directory's journal through `tracker` (an MlflowTracker); `plan`: the run
    directory as `check_run_dir` found it (checked here when not given)."""
    run_dir = Path(run_dir)
    plan = plan or check_run_dir(run_dir)
    try:
        return _replay(run_dir, tracker, plan)
    except BaseException:  # Ctrl-C, SIGTERM, a store that fails: nothing this replay opened stays RUNNING
        with interrupt.deferred(reraise=False):
            tracker.close()  # ends them KILLED; syncing again logs the rest (existing unfinished runs)
        raise


def _replay(run_dir: Path, tracker, plan: Plan) -> SyncOutcome:
    records, runs, suite = plan.records, plan.runs, plan.suite
    ids: dict[str, str] = {}  # journal id -> MLflow run id
    skip: set[str] = set()  # journal ids whose MLflow run is already complete
    outcome = SyncOutcome(run_dir, suite, "")
    for r in records:
        if r["op"] not in ("start", "start_child"):
            continue
        info = runs[r["id"]]
        parent = ids.get(info["parent"]) if info["parent"] else None
        existing = tracker.find_run(suite, info["name"], parent)
        if existing is None:
            if parent is None:
                ids[r["id"]] = tracker.start(suite, r["name"], r["params"], r["tags"], at_ms=r["t"])
            else:
                tracker.adopt(suite, parent, parent=True)
                ids[r["id"]] = tracker.start_child(r["name"], r["params"], r["tags"], at_ms=r["t"])
            outcome.created.append(info["name"])
            continue
        ids[r["id"]] = existing.info.run_id
        if existing.info.status == info["status"] and existing.info.end_time:
            skip.add(r["id"])
            outcome.unchanged.append(info["name"])
        else:
            outcome.updated.append(info["name"])
            tracker.adopt(suite, existing.info.run_id, parent=parent is None)
            tracker.log_params(existing.info.run_id, params=r["params"], tags=r["tags"])  # same values: no-op
    outcome.parent_run_id = next(ids[k] for k, v in runs.items() if v["parent"] is None)
    _fill_run_ids(run_dir, plan.results, {runs[k]["name"]: v for k, v in ids.items()})
    tracker.adopt(suite, outcome.parent_run_id, parent=True)
    open_runs: set[str] = set()  # journal ids open at this point of the journal
    for r in records:
        op, rid = r["op"], r.get("id")
        if op == "close":  # what is open at this point ends KILLED, as MlflowTracker.close() does
            for jid in sorted(open_runs, key=lambda j: runs[j]["parent"] is None):  # children first
                tracker.end(ids[jid], "KILLED", at_ms=r["t"])
            open_runs.clear()
            continue
        if rid in skip:
            continue
        mlflow_id = ids[rid]
        if op in ("start", "start_child"):  # created (or found) above, at this record's time
            open_runs.add(rid)
        elif op == "resume":
            tracker.resume(suite, mlflow_id)
            open_runs.add(rid)
        elif op == "resume_child":
            tracker.resume_child(mlflow_id)
            open_runs.add(rid)
        elif op == "dataset":
            tracker.log_dataset(mlflow_id, r["name"], r["digest"], r["source"], r["context"])
        elif op == "metrics":
            tracker.log_metrics(mlflow_id, r["metrics"], step=r["step"], at_ms=r["t"])
        elif op == "artifacts":
            tracker.log_artifacts(mlflow_id, [run_dir / p for p in r["paths"]])
        elif op == "end":
            tracker.end(mlflow_id, r["status"], at_ms=r["t"])
            open_runs.discard(rid)
    return outcome


def _fill_run_ids(run_dir: Path, table, by_name: dict[str, str]) -> None:
    """results.csv/.parquet (`table`, as read by check_run_dir): the MLflow child run id of each row
    that has none (an offline run's); a row's task key is its child run's name."""
    if table is None:
        return
    from harness.run.rundir import plain_row, task_key

    rows = [plain_row(row) for row in table.to_dict("records")]
    # only the empty ones: a live run's ids name the store it was tracked in, not this one
    ids = [r["mlflow_run_id"] or by_name.get(task_key(r["experiment"], r["variant"], r["size"])) for r in rows]
    if [r["mlflow_run_id"] for r in rows] != ids:
        results.save([r | {"mlflow_run_id": i} for r, i in zip(rows, ids)], run_dir)


def sync_paths(paths: list[Path], tracking_uri: str | None, out: Path) -> int:
    """`harness sync`: every run directory under `paths` (all checked before anything is logged)
    into the store, one line each. A run directory given that fails its check is an error (nothing
    synced); one found below a folder given is named in a warning and skipped, the others are
    synced, and the exit status is 1."""
    import sys

    rundir.check_out(out, "dir", example="results/")  # its mlflow.db and mlartifacts/: never in a run directory
    plans, skipped = [], 0
    for path in map(Path, paths):  # every check before the store is touched
        for run_dir in find_run_dirs([path]):
            if run_dir == path:
                plans.append(check_run_dir(run_dir))
                continue
            try:
                plans.append(check_run_dir(run_dir))
            except UserError as e:  # one bad copy among many: the others are still worth logging
                print(f"warning: {e}; skipped", file=sys.stderr)
                skipped += 1
    if not plans:
        raise UserError(f"sync {', '.join(map(str, paths))}: no run directory could be synced ({skipped} skipped, "
                        f"named above)")
    from harness.track.tracking import MlflowTracker, default_tracking_uri

    uri = tracking_uri or default_tracking_uri(out)
    for plan in plans:
        run_dir = plan.run_dir
        o = sync_run_dir(run_dir, MlflowTracker(uri, out / "mlartifacts"), plan)
        parts = [f"{len(v)} {k}" for k, v in (("created", o.created), ("updated", o.updated),
                                                ("unchanged", o.unchanged)) if v]
        print(f"synced {run_dir}: {', '.join(parts)} (experiment {o.suite!r}, parent run {o.parent_run_id})")
    print(f"MLflow: {uri}")
    if skipped:
        print(f"{skipped} run director{'y' if skipped == 1 else 'ies'} skipped (named above): not synced; "
              f"copy them again, or sync them one by one to see each refusal", file=sys.stderr)
    return 1 if skipped else 0
