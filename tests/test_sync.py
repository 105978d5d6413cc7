"""Offline runs synced later (`run --no-tracking`, then `python -m harness sync RUN_DIR`): what
lands in MLflow is what live tracking logs, with the original timestamps, and syncing again
creates nothing new. Real subprocesses, real SQLite stores, real Fashion-MNIST."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, run_cli, write_suite
from mlflow.tracking import MlflowClient

from harness.run import journal, results

SUITE = """
suite: offline
defaults: {min_run_time_s: 0.01}
experiments:
  - {name: corr, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
  - {name: learn, kind: learn_kernel, iterations: 3}
  - {name: lenet, kind: train, model: lenet, lr: 0.1, epochs: 2, batch_size: 64, train_limit: 256, val_limit: 128}
"""
# Same seed, strict mode: these are equal between two runs; times and speeds are not.
DETERMINISTIC = ("train_loss", "train_acc", "val_loss", "val_acc", "final_train_loss", "final_val_acc",
                 "best_val_acc", "loss_final", "max_abs_err", "params", "rows", "failed")
RUN_SPECIFIC_PARAMS = ("argv",)  # the command line: --no-tracking is in one of them
RUN_SPECIFIC_TAGS = ("run_dir", "mlflow.runName")


def _store(tmp_path, migrated, name):
    shutil.copyfile(migrated, tmp_path / f"{name}.db")
    return f"sqlite:///{tmp_path / name}.db"


@pytest.fixture(scope="module")
def pair(tmp_path_factory, _migrated_store, data_dir):
    """The same suite run twice: tracked live into one store, and offline then synced into another."""
    tmp = tmp_path_factory.mktemp("sync")
    write_suite(tmp / "s.yaml", SUITE)
    live, synced = _store(tmp, _migrated_store, "live"), _store(tmp, _migrated_store, "synced")
    common = ("--device", "cpu", "--data-dir", data_dir)
    p = run_cli("run", "s.yaml", *common, "--out", tmp / "live", "--tracking-uri", live, cwd=tmp)
    assert p.returncode == 0, p.stderr
    # offline, and with mlflow made unimportable: --no-tracking must not need it
    code = ("import sys; sys.modules['mlflow'] = None\nfrom harness.cli import main\n"
            f"sys.exit(main(['run', 's.yaml', '--no-tracking', '--out', 'offline', *{list(map(str, common))!r}]))")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not (tmp / "offline" / "mlflow.db").exists()
    (run_dir,) = (tmp / "offline" / "offline").iterdir()
    assert results.load(run_dir)["mlflow_run_id"].isna().all()  # no ids before the sync
    p = run_cli("sync", run_dir, "--tracking-uri", synced, "--out", tmp / "offline", cwd=tmp)
    assert p.returncode == 0, p.stderr
    assert "5 created" in p.stdout, p.stdout  # parent + 2 kernel rows + learn + lenet
    return tmp, live, synced, run_dir


def _runs(uri):
    client = MlflowClient(tracking_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "offline"]
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return client, {r.info.run_name if "mlflow.parentRunId" in r.data.tags else "<parent>": r for r in runs}


def _describe(uri) -> dict:
    """Everything about the experiment that does not depend on when or where it ran."""
    client, runs = _runs(uri)
    parent_id = runs["<parent>"].info.run_id
    out = {}
    for name, run in runs.items():
        d = run.data
        history = {k: [(m.step, m.value if k in DETERMINISTIC else None)
                       for m in sorted(client.get_metric_history(run.info.run_id, k), key=lambda m: m.step)]
                   for k in d.metrics}
        out[name] = {
            "status": run.info.status, "has_end_time": run.info.end_time is not None,
            "parent": "parent" if d.tags.get("mlflow.parentRunId") == parent_id else d.tags.get("mlflow.parentRunId"),
            "params": {k: v for k, v in d.params.items() if k not in RUN_SPECIFIC_PARAMS},
            "tags": {k: v for k, v in d.tags.items() if k not in RUN_SPECIFIC_TAGS and k != "mlflow.parentRunId"},
            "metrics": history,
            "datasets": sorted((i.dataset.name, i.dataset.digest, i.tags[0].value) for i in run.inputs.dataset_inputs),
            "artifacts": sorted(_artifacts(client, run.info.run_id)),
        }
    return out


def _artifacts(client, run_id, path=None):
    for f in client.list_artifacts(run_id, path):
        # sizes of files that hold no run ids or times (results files and plots do)
        same = not f.path.startswith("results.") and not f.path.endswith(".png")
        yield from (_artifacts(client, run_id, f.path) if f.is_dir else [(f.path, f.file_size if same else None)])


def test_a_synced_offline_run_is_what_live_tracking_logs(pair):
    _, live, synced, _ = pair
    a, b = _describe(live), _describe(synced)
    assert sorted(a) == sorted(b) == ["<parent>", "corr/native/in=8x8 k=2x2", "corr/vectorized/in=8x8 k=2x2",
                                      "learn/sgd/X=6x8 K=1x2", "lenet/lenet/28x28"]
    for name in a:
        for part in ("status", "has_end_time", "parent", "params", "tags", "datasets", "metrics"):
            assert a[name][part] == b[name][part], (name, part)
        # the same files; results.csv differs only in run ids and times, so compare names there
        assert [p for p, _ in a[name]["artifacts"]] == [p for p, _ in b[name]["artifacts"]], name
    assert a["lenet/lenet/28x28"]["metrics"]["val_acc"][1][0] == 2  # per-epoch steps 1 and 2
    assert a["lenet/lenet/28x28"]["datasets"] and a["<parent>"]["status"] == "FINISHED"


def test_sync_keeps_the_journals_timestamps(pair):
    _, _, synced, run_dir = pair
    client, runs = _runs(synced)
    records = journal.read(run_dir)
    starts = {r["name"]: r["t"] for r in records if r["op"] in ("start", "start_child")}
    ends = {r["id"].removeprefix(journal.OFFLINE): r["t"] for r in records if r["op"] == "end"}
    parent = runs.pop("<parent>")
    assert parent.info.start_time == starts[parent.info.run_name] and parent.info.end_time == ends[parent.info.run_name]
    for name, run in runs.items():
        assert run.info.start_time == starts[name] and run.info.end_time == ends[name]
    epoch_times = [r["t"] for r in records if r["op"] == "metrics" and r["metrics"].get("val_acc") is not None
                   and r["step"] > 0]
    history = client.get_metric_history(runs["lenet/lenet/28x28"].info.run_id, "val_acc")
    assert sorted(m.timestamp for m in history) == epoch_times


def test_sync_fills_the_run_ids_into_the_results(pair):
    _, _, synced, run_dir = pair
    _, runs = _runs(synced)
    df = results.load(run_dir)
    for row in df.to_dict("records"):
        assert row["mlflow_run_id"] == runs[f"{row['experiment']}/{row['variant']}/{row['size']}"].info.run_id
    assert results.load(run_dir / "results.csv")["mlflow_run_id"].tolist() == df["mlflow_run_id"].tolist()


def test_syncing_twice_creates_nothing_new(pair):
    tmp, _, synced, run_dir = pair
    before = _describe(synced)
    proc = run_cli("sync", tmp / "offline", "--tracking-uri", synced, "--out", tmp / "offline", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert "5 unchanged" in proc.stdout and "created" not in proc.stdout, proc.stdout
    assert _describe(synced) == before
    assert len(MlflowClient(tracking_uri=synced).search_runs(
        [MlflowClient(tracking_uri=synced).get_experiment_by_name("offline").experiment_id])) == 5


def test_a_live_run_directory_syncs_as_unchanged_into_its_own_store(pair):
    tmp, live, _, _ = pair
    (run_dir,) = (tmp / "live" / "offline").iterdir()
    proc = run_cli("sync", run_dir, "--tracking-uri", live, "--out", tmp / "live", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert "5 unchanged" in proc.stdout, proc.stdout


def test_a_live_run_synced_into_another_store_keeps_the_ids_of_its_own(pair, tmp_path, _migrated_store):
    tmp, live, _, _ = pair
    (run_dir,) = (tmp / "live" / "offline").iterdir()
    ids = results.load(run_dir)["mlflow_run_id"].tolist()
    other = _store(tmp_path, _migrated_store, "other")
    proc = run_cli("sync", run_dir, "--tracking-uri", other, "--out", tmp_path, cwd=tmp)
    assert proc.returncode == 0 and "5 created" in proc.stdout, proc.stdout + proc.stderr
    assert results.load(run_dir)["mlflow_run_id"].tolist() == ids
    assert _describe(other) == _describe(live)


def test_an_interrupted_sync_is_completed_without_duplicates(pair, tmp_path, _migrated_store):
    _, _, synced, run_dir = pair
    uri = _store(tmp_path, _migrated_store, "partial")
    cut = tmp_path / "cut"
    shutil.copytree(run_dir, cut)
    lines = (cut / journal.FILE).read_text().splitlines()
    (cut / journal.FILE).write_text("\n".join(lines[:len(lines) // 2]) + "\n")  # as if synced mid-run
    assert run_cli("sync", cut, "--tracking-uri", uri, "--out", tmp_path).returncode == 0
    shutil.copyfile(run_dir / journal.FILE, cut / journal.FILE)
    proc = run_cli("sync", cut, "--tracking-uri", uri, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "updated" in proc.stdout, proc.stdout
    assert _describe(uri) == _describe(synced)


def test_a_killed_and_resumed_offline_run_syncs_to_its_final_state(tmp_path, mlflow_uri):
    from harness.track.sync import sync_run_dir
    from harness.track.tracking import MlflowTracker
    from harness.run.null import NullTracker

    run_dir = tmp_path / "run"
    (run_dir / "plots").mkdir(parents=True)
    (run_dir / "plots" / "a.png").write_bytes(b"png")
    j = journal.Journal(NullTracker(), run_dir)
    parent = j.start("s", "run", {"suite": "s"}, {"device": "cpu"})
    a = j.start_child("a", {"lr": 0.1}, {"kind": "train"})
    j.log_metrics(a, {"val_acc": 0.5}, step=1)
    j.close()  # Ctrl-C: both runs end KILLED
    j = journal.Journal(NullTracker(), run_dir)  # `run --resume`
    j.resume("s", parent)
    j.resume_child(a)
    j.log_metrics(a, {"val_acc": 0.7}, step=2)
    j.log_artifacts(a, [run_dir / "plots" / "a.png"])
    j.end(a, "FINISHED")
    b = j.start_child("b", {}, {})
    j.end(b, "FAILED")
    j.end(parent, "FAILED")
    assert parent == "offline:run" and a == "offline:a"

    out = sync_run_dir(run_dir, MlflowTracker(mlflow_uri, tmp_path / "artifacts"))
    assert out.created == ["run", "a", "b"]
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("s").experiment_id])}
    assert {n: r.info.status for n, r in runs.items()} == {"run": "FAILED", "a": "FINISHED", "b": "FAILED"}
    assert [(m.step, m.value) for m in client.get_metric_history(runs["a"].info.run_id, "val_acc")] == [(1, 0.5), (2, 0.7)]
    assert [f.path for f in client.list_artifacts(runs["a"].info.run_id)] == ["a.png"]
    again = sync_run_dir(run_dir, MlflowTracker(mlflow_uri, tmp_path / "artifacts"))
    assert again.created == [] and sorted(again.unchanged) == ["a", "b", "run"]


def test_sync_of_something_that_is_not_a_run_directory_exits_2(tmp_path):
    proc = run_cli("sync", tmp_path, "--out", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"sync {tmp_path}: no tracking.jsonl in it or below it" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "mlflow.db").exists()
    proc = run_cli("sync", tmp_path / "nope", "--out", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2 and "no such directory" in proc.stderr


def test_a_run_directory_missing_an_artifact_is_refused_before_anything_is_logged(pair, tmp_path, _migrated_store):
    _, _, _, run_dir = pair
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("plots"))
    uri = _store(tmp_path, _migrated_store, "empty")
    proc = run_cli("sync", copy, "--tracking-uri", uri, "--out", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "plots/lenet.png" in proc.stderr and "copy the whole run directory" in proc.stderr
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("offline") is None


def test_resume_must_keep_the_tracking_mode(tmp_path):
    write_suite(tmp_path / "s.yaml", "suite: nt\nexperiments:\n  - {name: b, kind: learn_kernel, iterations: 2}\n")
    assert run_cli("run", "s.yaml", "--no-tracking", "--out", tmp_path / "r", cwd=tmp_path).returncode == 0
    (run_dir,) = (tmp_path / "r" / "nt").iterdir()
    proc = run_cli("run", "s.yaml", "--out", tmp_path / "r", "--resume", run_dir, cwd=tmp_path)
    assert proc.returncode == 2
    assert "was made with --no-tracking; resume it with --no-tracking too" in proc.stderr


def test_journal_records_are_json_lines_and_a_cut_last_line_is_dropped(tmp_path):
    from harness.run.null import NullTracker

    j = journal.Journal(NullTracker(), tmp_path)
    run = j.start("s", "r", {"p": [1, 2]}, {"t": None})
    j.log_metrics(run, {"x": float("nan"), "y": None}, step=3)
    with open(tmp_path / journal.FILE, "a") as f:
        f.write('{"op": "end", "t": 1')  # killed mid-write
    records = journal.read(tmp_path)
    assert [r["op"] for r in records] == ["start", "metrics"]
    assert records[1]["step"] == 3 and list(records[1]["metrics"]) == ["x"]
    assert json.loads((tmp_path / journal.FILE).read_text().splitlines()[0])["params"] == {"p": [1, 2]}
    assert (REPO / "harness" / "run" / "journal.py").read_text().count("import mlflow") == 0


def test_a_journal_continued_after_a_cut_last_line_keeps_every_new_record(tmp_path):
    # a kill or a full disk cut the last line; `run --resume` (a new Journal) appended onto it, so its
    # resume and everything after it read as one cut line: dropped, the continued run lost to sync
    from harness.run.null import NullTracker

    first = journal.Journal(NullTracker(), tmp_path)
    run = first.start("s", "r", {}, {})
    with open(tmp_path / journal.FILE, "a") as f:
        f.write('{"op": "metrics", "t": 1')  # cut mid-write
    again = journal.Journal(NullTracker(), tmp_path)
    again.resume("s", run)
    again.end(run, "FINISHED")
    assert [r["op"] for r in journal.read(tmp_path)] == ["start", "resume", "end"]
    assert journal.close_dead(tmp_path) is False  # nothing is open any more
