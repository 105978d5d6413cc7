"""MlflowTracker against a real (SQLite) MLflow store: run structure, params, metrics, statuses."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.core.errors import UserError
from harness.track.tracking import MlflowTracker, default_tracking_uri, flatten
from harness.run.null import NullTracker

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tracker(mlflow_uri: str, tmp_path: Path):
    t = MlflowTracker(mlflow_uri, tmp_path / "artifacts")
    yield t
    t.close()


@pytest.fixture
def client(mlflow_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_uri)


def test_children_share_the_parents_experiment_and_point_at_it(tracker, client):
    parent = tracker.start("suite-a", "20260101T000000-abcd", params={}, tags={})
    kids = [tracker.start_child(name, params={}, tags={}) for name in ("lenet", "alexnet")]

    assert tracker.parent_run_id == parent
    assert tracker.experiment_id == client.get_experiment_by_name("suite-a").experiment_id
    p = client.get_run(parent)
    assert p.info.run_name == "20260101T000000-abcd"
    assert "mlflow.parentRunId" not in p.data.tags
    for kid, name in zip(kids, ("lenet", "alexnet")):
        run = client.get_run(kid)
        assert run.info.run_name == name
        assert run.info.experiment_id == tracker.experiment_id
        assert run.data.tags["mlflow.parentRunId"] == parent


def test_params_are_flattened_and_tags_logged(tracker, client):
    params = {"train": {"lr": 0.1, "epochs": 3, "sched": None}, "sizes": [1, 2], "name": "x"}
    parent = tracker.start("s", "r", params=params, tags={"git.commit": "abc123", "dirty": True})
    child = tracker.start_child("c", params={"model": {"width": 64}}, tags={"variant": "v1"})

    p = client.get_run(parent).data
    assert p.params == {
        "train.lr": "0.1",
        "train.epochs": "3",
        "train.sched": "null",
        "sizes": "[1, 2]",
        "name": "x",
    }
    assert p.tags["git.commit"] == "abc123" and p.tags["dirty"] == "True"
    c = client.get_run(child).data
    assert c.params == {"model.width": "64"}
    assert c.tags["variant"] == "v1"


def test_more_params_and_metrics_than_one_batch_holds_are_all_logged(tracker, client):
    params = {f"p{i}": i for i in range(250)}
    tags = {f"t{i}": i for i in range(150)}
    run = tracker.start("s", "r", params=params, tags=tags)
    tracker.log_metrics(run, {f"m{i}": float(i) for i in range(2500)}, step=1)

    data = client.get_run(run).data
    assert len(data.params) == 250
    assert all(f"t{i}" in data.tags for i in range(150))
    assert len(data.metrics) == 2500 and data.metrics["m2499"] == 2499.0


def test_metrics_keep_their_steps_skip_none_and_allow_nan(tracker, client):
    run = tracker.start("s", "r", params={}, tags={})
    for epoch in range(3):
        tracker.log_metrics(run, {"loss": 1.0 / (epoch + 1), "acc": None}, step=epoch)
    tracker.log_metrics(run, {"final_acc": float("nan")})

    history = client.get_metric_history(run, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 1.0), (1, 0.5), (2, 1.0 / 3)
    ]
    assert all(m.timestamp > 1e12 for m in history)  # milliseconds since the epoch
    assert client.get_metric_history(run, "acc") == []
    assert math.isnan(client.get_run(run).data.metrics["final_acc"])


def test_end_records_each_status(tracker, client):
    parent = tracker.start("s", "r", params={}, tags={})
    statuses = ("FINISHED", "FAILED", "KILLED")
    kids = {s: tracker.start_child(s.lower(), params={}, tags={}) for s in statuses}
    for status, run in kids.items():
        tracker.end(run, status)
    tracker.end(parent, "FINISHED")

    for status, run in kids.items():
        info = client.get_run(run).info
        assert info.status == status and info.end_time is not None
    assert client.get_run(parent).info.status == "FINISHED"


def test_end_rejects_an_unknown_status(tracker):
    run = tracker.start("s", "r", params={}, tags={})
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED"):
        tracker.end(run, "DONE")


def test_close_kills_only_the_runs_still_open_and_is_safe_twice(tracker, client):
    parent = tracker.start("s", "r", params={}, tags={})
    done = tracker.start_child("done", params={}, tags={})
    running = tracker.start_child("running", params={}, tags={})
    tracker.end(done, "FINISHED")
    assert client.get_run(running).info.status == "RUNNING"

    tracker.close()
    tracker.close()

    assert client.get_run(done).info.status == "FINISHED"
    assert client.get_run(running).info.status == "KILLED"
    assert client.get_run(parent).info.status == "KILLED"


def test_artifacts_go_under_artifact_root_and_nothing_into_cwd(
    mlflow_uri, tmp_path, monkeypatch, client
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    (src / "env.json").write_text("{}")
    (src / "plots" / "loss.svg").write_text("<svg/>")
    root = tmp_path / "artifacts"

    tracker = MlflowTracker(mlflow_uri, root)
    run = tracker.start("s", "r", params={}, tags={})
    tracker.log_artifacts(run, [src / "env.json", src / "plots"])
    tracker.end(run, "FINISHED")

    exp = client.get_experiment(tracker.experiment_id)
    assert exp.artifact_location == root.resolve().as_uri()
    assert sorted(a.path for a in client.list_artifacts(run)) == ["env.json", "plots"]
    assert [a.path for a in client.list_artifacts(run, "plots")] == ["plots/loss.svg"]
    assert (root / run / "artifacts" / "plots" / "loss.svg").read_text() == "<svg/>"
    assert list(cwd.iterdir()) == []


def test_log_artifacts_names_a_missing_path(tracker, tmp_path):
    run = tracker.start("s", "r", params={}, tags={})
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        tracker.log_artifacts(run, [tmp_path / "nope.csv"])


def test_a_second_tracker_reuses_the_suites_experiment(mlflow_uri, tmp_path, client):
    first = MlflowTracker(mlflow_uri, tmp_path / "a")
    first.start("suite", "r1", params={}, tags={})
    first.close()
    second = MlflowTracker(mlflow_uri, tmp_path / "b")
    second.start("suite", "r2", params={}, tags={})
    second.close()

    assert second.experiment_id == first.experiment_id
    exp = client.get_experiment(second.experiment_id)
    assert exp.artifact_location == (tmp_path / "a").resolve().as_uri()
    assert len(client.search_runs([exp.experiment_id])) == 2


def test_a_deleted_experiment_is_a_user_error_saying_how_to_restore(mlflow_uri, tmp_path, client):
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(UserError, match="mlflow experiments restore"):
        MlflowTracker(mlflow_uri, tmp_path / "a").start("gone", "r", params={}, tags={})


def test_flatten_nests_with_dots_and_stringifies():
    nested = {"a": {"b": {"c": 1}}, "l": (1, "x"), "n": None, "f": 0.5, "e": {}, "t": True}
    assert flatten(nested) == {
        "a.b.c": "1", "l": '[1, "x"]', "n": "null", "f": "0.5", "e": "{}", "t": "True"
    }
    assert flatten({"k": 1}, prefix="spec.") == {"spec.k": "1"}


def test_flatten_truncates_to_mlflows_param_limit():
    assert len(flatten({"long": "x" * 10_000})["long"]) == 6000


def test_default_tracking_uri_is_sqlite_under_results(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "results"
    assert default_tracking_uri(root) == f"sqlite:///{root.resolve()}/mlflow.db"
    assert root.is_dir()


def test_default_tracking_uri_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert default_tracking_uri(tmp_path / "results") == "http://mlflow.example:5000"


def test_null_tracker_does_nothing_and_does_not_import_mlflow(tmp_path):
    t = NullTracker()
    assert t.start("s", "r", {}, {}) == "" and t.start_child("c", {}, {}) == ""
    t.log_metrics("", {"x": 1.0}, step=0)
    t.log_artifacts("", [tmp_path / "missing"])
    t.end("", "FINISHED")
    t.close()
    code = "import harness.run.null, sys; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_find_run_finds_children_whose_names_hold_quotes(mlflow_uri, tmp_path):
    """Matrix runs over model_args are named like lenet[act='relu']: MLflow's filter grammar cannot
    quote them, and a sync that did not find them would log them twice."""
    from harness.track.tracking import MlflowTracker

    tracker = MlflowTracker(mlflow_uri, tmp_path / "artifacts")
    parent = tracker.start("quotes", "run-1", params={}, tags={})
    names = ["lenet[act='relu']/train/28x28", "lenet[act='sigmoid']/train/28x28", "it's/x/y"]
    ids = {name: tracker.start_child(name, params={}, tags={}) for name in names}
    other = tracker.start_child("lenet[act=relu]/train/28x28", params={}, tags={})
    for name, run_id in ids.items():
        assert tracker.find_run("quotes", name, parent).info.run_id == run_id
    assert tracker.find_run("quotes", "lenet[act=relu]/train/28x28", parent).info.run_id == other
    assert tracker.find_run("quotes", "lenet[act='tanh']/train/28x28", parent) is None
    assert tracker.find_run("quotes", "run-1").info.run_id == parent
    assert tracker.find_run("quotes", "lenet[act='relu']/train/28x28") is None  # not a parent run
    tracker.close()


def test_a_suites_experiment_is_a_model_development_one_with_its_description(tracker, client):
    tracker.start("suite-kind", "r1", params={"description": "four networks"}, tags={})
    exp = client.get_experiment_by_name("suite-kind")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow 3: opens on the runs
    assert exp.tags["mlflow.note.content"] == "four networks"
    # one made by an older harness (no tags) is marked when a run starts in it; a new description wins
    old = client.create_experiment("suite-old")
    tracker.start("suite-old", "r2", params={"description": "now described"}, tags={})
    tags = client.get_experiment(old).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development" and tags["mlflow.note.content"] == "now described"
