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

The results files of an offline run get the MLflow child run ids (atomically), before they are
logged as artifacts, as live tracking would have written them; ids already there are kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.run import journal, results
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
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f"sync {path}: no such directory; give a run directory (results/<suite>/<UTC time>-<id>) "
                            f"or a folder of them")
        if (path / journal.FILE).is_file():
            found.append(path)
            continue
        below = sorted(p.parent for p in path.rglob(journal.FILE))
        if not below:
            raise UserError(f"sync {path}: no {journal.FILE} in it or below it; it is not a run directory "
                            f"(or it was written by a harness older than the tracking journal)")
        found += below
    return found


def _plan(run_dir: Path) -> tuple[list[dict], dict[str, dict]]:
    """The journal's records and, per run id: name, parent id, suite and final status."""
    try:
        records = journal.read(run_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"sync {run_dir}: {e}") from e
    runs: dict[str, dict] = {}
    suite = None
    for i, r in enumerate(records, 1):
        op = r["op"]
        if op == "start":
            suite = r.get("suite")
            runs[r["id"]] = {"name": r["name"], "parent": None, "status": "RUNNING"}
        elif op == "start_child":
            runs[r["id"]] = {"name": r["name"], "parent": r["parent"], "status": "RUNNING"}
        elif op in ("resume", "resume_child"):
            if r["id"] not in runs:
                raise UserError(f"sync {run_dir}: {journal.FILE} record {i} continues run {r['id']}, "
                                f"which the journal never started")
            runs[r["id"]]["status"] = "RUNNING"
        elif op == "end":
            runs[r["id"]]["status"] = r["status"]
        elif op == "close":
            for run in runs.values():
                if run["status"] == "RUNNING":
                    run["status"] = "KILLED"
    if suite is None:
        raise UserError(f"sync {run_dir}: {journal.FILE} has no `start` record; the run never started")
    for run in runs.values():
        run["suite"] = suite
    return records, runs


def _artifact(run_dir: Path, rel: str) -> Path:
    path = Path(rel)
    return path if path.is_absolute() else run_dir / path


def sync_run_dir(run_dir: Path, tracker) -> SyncOutcome:
    """Replay one run directory's journal through `tracker` (an MlflowTracker)."""
    run_dir = Path(run_dir)
    records, runs = _plan(run_dir)
    missing = sorted({p for r in records if r["op"] == "artifacts" for p in r["paths"]
                      if not _artifact(run_dir, p).exists()})
    if missing:  # checked before anything is logged: an incomplete copy is not half-synced
        raise UserError(f"sync {run_dir}: the journal logs artifacts that are not in the run directory: "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; copy the whole run directory")
    suite = next(iter(runs.values()))["suite"]
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
    _fill_run_ids(run_dir, {runs[k]["name"]: v for k, v in ids.items()})
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
            tracker.log_artifacts(mlflow_id, [_artifact(run_dir, p) for p in r["paths"]])
        elif op == "end":
            tracker.end(mlflow_id, r["status"], at_ms=r["t"])
            open_runs.discard(rid)
    return outcome


def _fill_run_ids(run_dir: Path, by_name: dict[str, str]) -> None:
    """results.csv/.parquet: the MLflow child run id of each row that has none (an offline run's);
    a row's task key is its child run's name."""
    if not (run_dir / "results.parquet").exists() and not (run_dir / "results.csv").exists():
        return
    from harness.run.rundir import plain_row, task_key

    rows = [plain_row(row) for row in results.load(run_dir).to_dict("records")]
    # only the empty ones: a live run's ids name the store it was tracked in, not this one
    ids = [r["mlflow_run_id"] or by_name.get(task_key(r["experiment"], r["variant"], r["size"])) for r in rows]
    if [r["mlflow_run_id"] for r in rows] != ids:
        results.save([r | {"mlflow_run_id": i} for r, i in zip(rows, ids)], run_dir)


def sync_paths(paths: list[Path], tracking_uri: str | None, out: Path) -> None:
    """`harness sync`: every run directory under `paths` (all checked before anything is logged)
    into the store, one line each."""
    run_dirs = find_run_dirs(paths)
    from harness.track.tracking import MlflowTracker, default_tracking_uri

    uri = tracking_uri or default_tracking_uri(out)
    for run_dir in run_dirs:
        o = sync_run_dir(run_dir, MlflowTracker(uri, out / "mlartifacts"))
        parts = [f"{len(v)} {k}" for k, v in (("created", o.created), ("updated", o.updated),
                                                ("unchanged", o.unchanged)) if v]
        print(f"synced {run_dir}: {', '.join(parts)} (experiment {o.suite!r}, parent run {o.parent_run_id})")
    print(f"MLflow: {uri}")
