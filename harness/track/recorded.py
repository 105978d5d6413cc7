"""A run recorded in MLflow, read back as a run directory (`python -m harness reproduce RUN_ID`).

`run` logs each invocation as a parent run tagged with its run directory (`run_dir`) and with the
files that describe it as artifacts (suite.yaml, env.json, results, steps.csv). Given the id of that
parent run, or of one of its children, `run_dir_of` returns the run directory when it is on this
machine and is the one that logged the run (its state.json names the parent run), else a copy of
those artifacts downloaded into `dest`.
"""
from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness.core.errors import UserError
from harness.track.tracking import PARENT_RUN_TAG

ARTIFACTS = ("suite.yaml", "env.json", "results.parquet", "results.csv", "steps.csv")


def run_dir_of(tracking_uri: str, run_id: str, dest: Path) -> tuple[Path, str, Path]:
    """(the run directory of the MLflow run `run_id` here, or `dest` holding its artifacts; the parent
    run's id; the run directory it recorded, maybe on another machine); a UserError when the store holds
    no such run, or the run was not logged by `harness run`."""
    from harness.track.store import open_store

    open_store(tracking_uri, create=False)
    client = MlflowClient(tracking_uri=tracking_uri)
    run = _get(client, run_id, tracking_uri)
    parent_id = run.data.tags.get(PARENT_RUN_TAG)
    if parent_id:
        run = _get(client, parent_id, tracking_uri)
    tags = run.data.tags
    if "run_dir" not in tags:
        raise UserError(f"MLflow run {run_id} in {tracking_uri}: not a run logged by `python -m harness run` "
                        f"(it has no run_dir tag); give the id of a harness parent run or its run directory")
    local = Path(tags["run_dir"])
    if _logged_by(local, run.info.run_id):
        return local, run.info.run_id, local
    dest.mkdir(parents=True, exist_ok=True)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    for name in ARTIFACTS:
        if name in names:
            client.download_artifacts(run.info.run_id, name, str(dest))
    if not (dest / "suite.yaml").is_file() or not any((dest / n).is_file() for n in ("results.parquet", "results.csv")):
        raise UserError(f"MLflow run {run.info.run_id} in {tracking_uri}: its run directory {local} is not on this "
                        f"machine and the run has no suite.yaml and results artifacts (it did not finish?); "
                        f"give the run directory instead")
    return dest, run.info.run_id, local


def _get(client: MlflowClient, run_id: str, tracking_uri: str):
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(f"{run_id}: not a run directory, and no MLflow run with that id in {tracking_uri}; "
                        f"give a run directory (results/<suite>/<UTC time>-<id>) or the id of a run in "
                        f"that store") from None


def _logged_by(path: Path, parent_id: str) -> bool:
    """Whether the run directory `path` here is the one that logged the parent run (its state.json,
    validated: a damaged one is not that run directory, and its artifacts are read instead)."""
    from harness.run.runfiles import read_state

    try:
        state = read_state(path / "state.json")
    except UserError:
        return False
    return state.get("parent_run_id") == parent_id and (path / "suite.yaml").is_file()
