"""The MLflow experiment of a suite: what marks it, and finding the newest one.

An experiment carries the suite's description (`mlflow.note.content`, shown on the experiment's
page) and is marked as a model-development experiment (`mlflow.experimentKind`:
`custom_model_development`), so that MLflow 3's UI opens it on its runs instead of its GenAI
traces page. Experiments made by an older harness are marked the first time a run logs to them.
"""
from __future__ import annotations

from mlflow.tracking import MlflowClient

KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"


def experiment_tags(description: str | None) -> dict[str, str]:
    """The tags a suite's experiment is created with."""
    return {KIND_TAG: KIND} | ({NOTE_TAG: description} if description else {})


def mark(client: MlflowClient, exp, description: str | None) -> None:
    """Give an existing experiment the tags it lacks or whose value changed (the suite's
    description is the one of its latest run)."""
    for key, value in experiment_tags(description).items():
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)


def newest_experiment(tracking_uri: str) -> tuple[str, str] | None:
    """(id, name) of the experiment whose latest run started last, or None when the store holds
    no run."""
    client = MlflowClient(tracking_uri=tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, max_results=1, order_by=["attributes.start_time DESC"]) if ids else []
    if not runs:
        return None
    exp_id = runs[0].info.experiment_id
    return exp_id, client.get_experiment(exp_id).name


def runs_url(base_url: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
