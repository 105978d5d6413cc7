"""The results table rebuilt from the child runs `run` logged into MLflow (`report --from-mlflow`):
runs recorded on other machines into a shared server, compared like results files."""
from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from harness.core.errors import UserError
from harness.run import results
from harness.track.tracking import PARENT_RUN_TAG


def search_results(tracking_uri: str, suite: str | None = None):
    """The results table (harness.run.results columns) rebuilt from the child runs `run` logged, so that
    `report --from-mlflow` compares runs recorded on other machines into a shared server.

    Provenance (run id = the parent's run name, commit, device) comes from the parent run's tags.
    Status is what MLflow knows: FINISHED -> ok (a kernel row without a time -> capped), FAILED ->
    failed (diverged included), KILLED -> failed, RUNNING -> running (not a result yet).
    """
    from harness.track.store import open_store

    open_store(tracking_uri, create=False)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e for e in client.search_experiments() if suite in (None, e.name)]
    if not experiments:
        raise UserError(f"{tracking_uri}: no MLflow experiment {'named ' + repr(suite) if suite else 'at all'}; "
                        f"run a suite first, or check --tracking-uri")
    names = {e.experiment_id: e.name for e in experiments}
    runs, token = [], None
    while True:
        page = client.search_runs(list(names), max_results=5000, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    runs.sort(key=lambda r: r.info.start_time)  # the order rows were run in, as in results files
    parents = {r.info.run_id: r for r in runs if PARENT_RUN_TAG not in r.data.tags}
    rows = []
    for r in runs:
        if r.data.tags.get(PARENT_RUN_TAG) in parents and "kind" in r.data.tags:
            row = _checked_row(r, parents[r.data.tags[PARENT_RUN_TAG]], names[r.info.experiment_id], tracking_uri)
            if row is not None:
                rows.append(row)
    return results.to_frame(sorted(rows, key=lambda row: row["run_id"]))


def _checked_row(run, parent, suite: str, tracking_uri: str) -> dict | None:
    """The run's row, or None with a warning naming the run when what it holds is not what `run`
    logs (a param that is not a number, a value the schema cannot hold): a store is shared, and one
    run that another client logged must not cost the report of every other."""
    import sys

    try:
        row = _row(run, parent, suite)
        why = results.storable(row)
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        why = f"{type(e).__name__}: {e}"
    if why is None:
        return row
    print(f"warning: MLflow run {run.info.run_id} ({run.info.run_name}) in {tracking_uri}: not a row `run` logs "
          f"({why.splitlines()[0][:200]}); skipped", file=sys.stderr)
    return None


def _row(run, parent, suite: str) -> dict:
    import datetime as dt

    tags, params, metrics, p_tags = run.data.tags, run.data.params, run.data.metrics, parent.data.tags
    kind = tags["kind"]

    def param(name, cast=str):
        value = params.get(name)
        return None if value in (None, "null", "None") else cast(value)

    row = {"suite": suite, "run_id": parent.info.run_name, "experiment": tags.get("experiment"), "kind": kind,
           "family": tags.get("family"), "variant": tags.get("variant"), "size": tags.get("size"),
           "seed": param("seed", int), "device": p_tags.get("device"), "dtype": param("dtype"),
           "determinism": tags.get("determinism"), "code_hash": tags.get("code_hash") or None,
           "git_commit": _none(p_tags.get("git_commit")), "git_dirty": p_tags.get("git_dirty") == "True",
           "mlflow_run_id": run.info.run_id,
           "started_at": dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.timezone.utc).isoformat(timespec="seconds")}
    row["device_name"] = _none(p_tags.get("gpu_name") if (row["device"] or "").startswith("cuda") else p_tags.get("cpu_model"))
    row |= {k: metrics[results.metric_name(k, kind)] for k in results.RUN_METRICS
            if results.metric_name(k, kind) in metrics}
    for k in ("n_measurements", "peak_mem_bytes", "peak_mem_reserved_bytes", "peak_rss_bytes",
              "gpu_mem_used_peak_bytes", "params"):
        if k in row:
            row[k] = int(row[k])
    if kind == "kernel":
        variants = json.loads(params.get("variants") or "[]")
        row["baseline"] = param("baseline") or (variants[0] if variants else None)
    if kind == "train":
        row |= {"model": param("model"), "epochs": param("epochs", int), "batch_size": param("batch_size", int),
                "lr": param("lr", float), "precision": param("precision"), "resize": tags.get("size")}
    status = run.info.status
    if status == "FINISHED":
        row["status"] = "capped" if kind == "kernel" and "time_median_s" not in metrics else "ok"
    else:  # RUNNING: an invocation still going (or killed without a word), not a result yet
        row |= {"status": "running" if status == "RUNNING" else "failed", "error": f"MLflow run {status}"}
    return row


def _none(value):
    return None if value in (None, "None", "null", "") else value
