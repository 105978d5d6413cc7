"""A team's tracking server: `mlflow server` on a real PostgreSQL (tests/servers.py), many `run`s logging
into it at once, an offline run synced into it, artifacts stored by the server and read back through it;
a direct PostgreSQL URI, also a fresh database that several `run`s create at once (serialised by an
advisory lock); and SQLite refused as the store of many processes at once (exit 2)."""
from __future__ import annotations

import filecmp
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, needs_extra, run_cli, write_suite
from servers import mlflow_server, postgres  # noqa: F401 - session fixtures: real PostgreSQL, real server

from harness.core.errors import UserError
from harness.run import results
from harness.track.store import many_writers, refuse_shared_sqlite

LIVE, OFFLINE = ["team_a", "team_b", "team_c", "team_d"], "team_e"
SUITE = """
suite: team
defaults: {epochs: 1, batch_size: 64, dataset: fashion_mnist_sample, train_limit: 128, val_limit: 64}
experiments:
""" + "".join(f"  - {{name: {name}, kind: train, model: lenet, lr: 0.1, seed: {i}}}\n" for i, name in enumerate([*LIVE, OFFLINE]))
KERNEL = """
suite: x
defaults: {min_run_time_s: 0.01}
experiments:
  - {name: corr, kind: kernel, kernel: corr2d, variants: [vectorized], sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
"""


def shard(i: int) -> list[str]:
    """What makes process i (0-3 live, 4 offline) one of five machines sharing the suite: shard i of 5
    (experiment i: the j-th experiment goes to shard j % 5)."""
    return ["--shard", f"{i}/5"]


def harness(*args, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # six harness processes and a server: minutes on a busy 2-core machine
def test_shards_log_into_a_postgres_backed_server_at_once(mlflow_server, tmp_path):  # noqa: F811
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    server = mlflow_server.uri
    write_suite(tmp_path / "team.yaml", SUITE)
    machines = [tmp_path / f"machine{i}" for i in range(5)]  # each its own results root, as on its own host
    procs = [harness("run", tmp_path / "team.yaml", *shard(i), "--device", "cpu", "--out", machines[i],
                     "--tracking-uri", server, cwd=tmp_path) for i in range(4)]
    procs.append(harness("run", tmp_path / "team.yaml", *shard(4), "--device", "cpu", "--out", machines[4],
                         "--no-tracking", cwd=tmp_path))  # at the same time, offline
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        assert "MLflow calls failed" not in err, err  # the journal swallows failures: none may have happened
    run_dirs = [next((m / "team").iterdir()) for m in machines]
    synced = run_cli("sync", run_dirs[4], "--tracking-uri", server, "--out", machines[4], cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "created" in synced.stdout, synced.stdout

    client = MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name("team")
    assert exp.artifact_location.startswith("mlflow-artifacts:/"), exp.artifact_location  # the server's store
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.run_name for r in parents) == sorted(d.name for d in run_dirs)  # each once
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_name = {r.info.run_name: r for r in parents}
    experiments = []
    for run_dir in run_dirs:
        parent = by_name[run_dir.name]
        table = results.load(run_dir)
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_id for r in children) == sorted(table["mlflow_run_id"])  # once each, ids on rows
        experiments += list(table["experiment"])
        # artifacts: stored by the server, read back through it equal to the files the client wrote
        assert parent.info.artifact_uri.startswith("mlflow-artifacts:/"), parent.info.artifact_uri
        got = Path(download_artifacts(run_id=parent.info.run_id, artifact_path="results.csv", tracking_uri=server,
                                      dst_path=str(tmp_path / "got" / run_dir.name)))
        assert filecmp.cmp(got, run_dir / "results.csv", shallow=False)
        for child in children:
            name = child.data.tags["experiment"]
            plot = Path(download_artifacts(run_id=child.info.run_id, artifact_path=f"{name}.png",
                                           tracking_uri=server, dst_path=str(tmp_path / "got" / child.info.run_id)))
            assert filecmp.cmp(plot, run_dir / "plots" / f"{name}.png", shallow=False)
        assert not (run_dir.parents[1] / "mlartifacts").exists()  # nothing kept on the client's side
    assert sorted(experiments) == sorted([*LIVE, OFFLINE])  # every experiment ran once, on some machine
    assert len(list(mlflow_server.artifacts.rglob("results.csv"))) == 5  # in the server's destination

    report = run_cli("report", "--from-mlflow", "--tracking-uri", server, "--suite", "team", "--format", "csv",
                     cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert all(name in report.stdout for name in [*LIVE, OFFLINE]), report.stdout


def test_clients_racing_to_create_a_suites_experiment_on_the_server_get_one(mlflow_server, tmp_path):  # noqa: F811
    import threading

    from harness.track.tracking import MlflowTracker

    ids, errors = [], []

    def start(i: int) -> None:
        try:
            ids.append(MlflowTracker(mlflow_server.uri, tmp_path / f"client{i}")._experiment_id("race"))
        except Exception as e:  # noqa: BLE001 - collected and shown by the assertion
            errors.append(repr(e))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(ids) == 8 and len(set(ids)) == 1, (ids, errors)
    assert not list(tmp_path.iterdir())  # no client made an artifact folder: the server holds them


def test_runs_logging_one_new_dataset_at_once_all_record_it(mlflow_server, tmp_path):  # noqa: F811
    # shards log the same dataset (name, digest) into one experiment at the same moment; MLflow's store looks it
    # up and then inserts it, so two of them can both miss it and the second insert breaks the unique key
    import threading

    from mlflow.tracking import MlflowClient

    from harness.track.tracking import MlflowTracker

    trackers = [MlflowTracker(mlflow_server.uri, tmp_path / f"client{i}") for i in range(8)]
    client = MlflowClient(mlflow_server.uri)
    exp = trackers[0]._experiment_id("datasets")
    errors = []
    for round_ in range(6):  # a new dataset each round: the race is at its first insert
        runs = [client.create_run(exp).info.run_id for _ in trackers]
        gate = threading.Barrier(len(trackers))

        def log(i: int) -> None:
            gate.wait()
            try:
                trackers[i].log_dataset(runs[i], "fashion_mnist_sample", f"digest{round_}", "/data", "training")
            except Exception as e:  # noqa: BLE001 - collected and shown by the assertion
                errors.append(f"round {round_}, run {i}: {e}"[:300])

        threads = [threading.Thread(target=log, args=(i,)) for i in range(len(trackers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for run_id in runs:
            inputs = client.get_run(run_id).inputs.dataset_inputs
            assert [(d.dataset.name, d.dataset.digest) for d in inputs] == [("fashion_mnist_sample", f"digest{round_}")]
    assert not errors, errors


def test_a_direct_postgres_uri_tracks_with_artifacts_under_the_results_root(mlflow_server, tmp_path, caplog):  # noqa: F811
    from mlflow.tracking import MlflowClient

    write_suite(tmp_path / "k.yaml", KERNEL.replace("suite: x", "suite: direct"))
    uri = mlflow_server.postgres_uri  # the database behind the server, already migrated by it
    p = run_cli("run", tmp_path / "k.yaml", "--device", "cpu", "--out", tmp_path / "results", "--tracking-uri", uri,
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("direct")
    assert exp.artifact_location == (tmp_path / "results" / "mlartifacts").resolve().as_uri()
    assert len(list((tmp_path / "results" / "mlartifacts").rglob("results.csv"))) == 1
    # the server sees the same database; logging into that experiment through it warns that its
    # artifacts stay in this client's folder
    from harness.track.tracking import MlflowTracker

    with caplog.at_level(logging.WARNING, logger="harness.track.tracking"):
        assert MlflowTracker(mlflow_server.uri, tmp_path / "elsewhere")._experiment_id("direct") == exp.experiment_id
    assert f"keeps its artifacts at {exp.artifact_location}, a folder on one machine" in caplog.text


def test_shards_opening_a_fresh_postgres_database_at_once_create_it_once_and_all_track(postgres, tmp_path):  # noqa: F811
    """MLflow creates and migrates an empty database without a lock: before track/store.py took one, all
    but one of four processes exited 2 ("duplicate key value violates unique constraint
    pg_type_typname_nsp_index") in every one of 6 tries."""
    from mlflow.tracking import MlflowClient

    n = 4
    postgres.tool("createdb", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "fresh")
    uri = postgres.uri("fresh")
    write_suite(tmp_path / "k.yaml", "suite: fresh\ndefaults: {min_run_time_s: 0.01}\nexperiments:\n" + "".join(
        f"  - {{name: k{i}, kind: kernel, kernel: corr2d, variants: [vectorized], "
        f"sizes: {{input: [[8, 8]], kernel: [[2, 2]]}}}}\n" for i in range(n)))
    machines = [tmp_path / f"machine{i}" for i in range(n)]
    procs = [harness("run", tmp_path / "k.yaml", "--shard", f"{i}/{n}", "--device", "cpu", "--out", machines[i],
                     "--tracking-uri", uri, cwd=tmp_path) for i in range(n)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "Traceback" not in err and "MLflow calls failed" not in err, err

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("fresh").experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.run_name for r in parents) == sorted(next((m / "fresh").iterdir()).name for m in machines)
    assert sorted(r.data.tags["experiment"] for r in runs if r not in parents) == [f"k{i}" for i in range(n)]
    assert {r.info.status for r in runs} == {"FINISHED"}  # none left RUNNING


def test_a_postgres_store_whose_creation_lock_stays_held_is_refused_with_the_lock_named(postgres, monkeypatch):  # noqa: F811
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from harness.track import store

    postgres.tool("createdb", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "held")
    uri = postgres.uri("held")
    monkeypatch.setattr(store, "CREATE_LOCK_TIMEOUT_S", 1)
    engine = sqlalchemy.create_engine(uri, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as holder:  # another process, stuck while creating the schema
        holder.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": store.CREATE_LOCK})
        with pytest.raises(UserError) as e:
            store.open_store(uri)
        assert str(e.value).startswith(f"--tracking-uri {uri}: another session has held "
                                       f"pg_advisory_lock({store.CREATE_LOCK})"), e.value
        assert "for over 1 s" in str(e.value) and "pg_stat_activity" in str(e.value), e.value
    engine.dispose()
    store.open_store(uri)  # released: the store is created


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("psycopg2") is not None,
                    reason="psycopg2 is installed here, so postgresql:// is a usable spelling")
def test_postgresql_without_a_driver_says_which_spelling_to_use(tmp_path):
    write_suite(tmp_path / "k.yaml", KERNEL)
    p = run_cli("run", tmp_path / "k.yaml", "--out", tmp_path / "results",
                "--tracking-uri", "postgresql://me:secret@127.0.0.1:1/mlflow", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "write postgresql+psycopg://me:***@127.0.0.1:1/mlflow" in p.stderr and "secret" not in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "results" / "x").exists()


def test_a_psycopg_uri_without_the_driver_says_which_extra_to_install(tmp_path):
    # what a newcomer's `pip install -e ".[dev]"` gets, wherever psycopg is installed (None blocks the import)
    write_suite(tmp_path / "k.yaml", KERNEL)
    code = ("import sys\nsys.modules['psycopg'] = None\nfrom harness.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    p = subprocess.run([sys.executable, "-c", code, "run", str(tmp_path / "k.yaml"), "--out", str(tmp_path / "results"),
                        "--tracking-uri", "postgresql+psycopg://me:secret@127.0.0.1:1/mlflow"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2, p.stderr
    assert p.stderr == ("error: --tracking-uri postgresql+psycopg://me:***@127.0.0.1:1/mlflow: the psycopg driver "
                        "is not installed; pip install 'harness[postgres]'\n"), p.stderr
    assert not (tmp_path / "results").exists()

@needs_extra("psycopg")
def test_postgres_that_does_not_answer_is_refused_at_once(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_suite(tmp_path / "k.yaml", KERNEL)
    p = run_cli("run", tmp_path / "k.yaml", "--out", tmp_path / "results",
                "--tracking-uri", f"postgresql+psycopg://me@127.0.0.1:{port}/mlflow", cwd=tmp_path, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "PostgreSQL does not answer or refuses the connection" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "results" / "x").exists()


def test_many_writers_names_shards_of_more_than_one():
    assert many_writers(None) == "" and many_writers("0/1") == ""
    assert many_writers("2/4") == "--shard 2/4" and many_writers((3, 4)) == "--shard 3/4"


def test_sqlite_is_refused_as_the_store_of_many_processes(tmp_path, monkeypatch):
    default = f"the default store sqlite:///{(tmp_path / 'results' / 'mlflow.db').resolve()}"
    for uri, store in ((None, default), ("sqlite:///x/mlflow.db", "--tracking-uri sqlite:///x/mlflow.db")):
        with pytest.raises(UserError) as e:
            refuse_shared_sqlite(uri, "--shard 2/4", tmp_path / "results")
        assert str(e.value).startswith(f"--shard 2/4: many processes would write live into one SQLite store ({store})")
        assert "--no-tracking" in str(e.value) and "harness sync" in str(e.value) and "http://" in str(e.value)
    refuse_shared_sqlite("http://127.0.0.1:5000", "--shard 2/4", tmp_path)  # a server: many writers welcome
    refuse_shared_sqlite("postgresql+psycopg://u@h/db", "--shard 2/4", tmp_path)
    refuse_shared_sqlite("sqlite:///x/mlflow.db", "", tmp_path)  # one process
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    refuse_shared_sqlite(None, "launch", tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///y.db")
    with pytest.raises(UserError, match=r"\$MLFLOW_TRACKING_URI=sqlite:///y.db"):
        refuse_shared_sqlite(None, "launch", tmp_path)


@pytest.mark.parametrize("how", [["--shard", "1/2"], ["--shard", "auto"]])
def test_run_as_a_shard_refuses_the_default_sqlite_store_before_creating_anything(tmp_path, how):
    write_suite(tmp_path / "k.yaml", KERNEL)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
        "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_STEP": "1"}
    p = subprocess.run([sys.executable, "-m", "harness", "run", "k.yaml", *how, "--out", "results"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: --shard 1/2: many processes would write live into one SQLite store "
                               "(the default store sqlite:///"), p.stderr
    assert "--no-tracking" in p.stderr and not (tmp_path / "results").exists()
