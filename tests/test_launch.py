"""`launch --launcher local` (harness.scale.launch): a suite as shards in subprocesses, merged and
synced; a shard that fails is named with its log; `launch --resume` resubmits only what did not
finish, also after the launch was interrupted."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from conftest import REPO, run_cli, write_suite

from harness.core import envinfo

LENET = """
    suite: tinylaunch
    defaults: {batch_size: 64, epochs: 1, seed: 0, dataset: fashion_mnist_sample, train_limit: 256,
               val_limit: 256, determinism: strict}
    experiments:
      - {name: lenet, kind: train, model: lenet, lr: 0.1}
    matrix: {seed: [0, 1, 2]}
"""
# what a machine measures rather than what the suite computes (and the columns naming the run)
MEASURED = {"run_id", "shard", "started_at", "wall_s", "mlflow_run_id", "time_median_s", "time_iqr_s",
            "n_measurements", "noisy", "gflops", "images_per_s", "epoch_time_s", "train_time_s",
            "time_to_target_s", "compile_s", "peak_mem_bytes", "peak_mem_reserved_bytes", "peak_rss_bytes",
            "gpu_mem_used_peak_bytes", "gpu_util_mean_pct", "gpu_power_mean_w", "achieved_tflops", "mfu"}


def launch_dir(out: Path, suite: str = "tinylaunch") -> Path:
    found = sorted((out / suite).glob("*-launch-*"))
    assert len(found) == 1, found
    return found[0]


def test_two_local_shards_equal_a_sequential_run_and_are_synced_once(tmp_path, monkeypatch, mlflow_uri):
    from harness.run import results

    # the same threads as the shards get (the local launcher shares the CPUs), so the numbers match bit for bit
    monkeypatch.setenv("OMP_NUM_THREADS", str(max(1, envinfo.usable_cpus() // 2)))
    suite = write_suite(tmp_path / "s.yaml", LENET)
    seq = run_cli("run", suite, "--no-tracking", "--device", "cpu", "--out", tmp_path / "seq")
    assert seq.returncode == 0, seq.stderr
    r = run_cli("launch", suite, "--launcher", "local", "--shards", "2", "--device", "cpu", "--out", tmp_path / "out",
                "--tracking-uri", mlflow_uri)
    assert r.returncode == 0, r.stderr
    launch = launch_dir(tmp_path / "out")
    merged = results.load(launch)
    sequential = results.load(next((tmp_path / "seq" / "tinylaunch").iterdir()))
    assert list(merged["shard"]) == ["0/2", "1/2", "0/2"] and set(merged["run_id"]) == {launch.name}
    assert merged["fingerprint"].notna().all()
    same = [c for c in merged.columns if c not in MEASURED]
    assert merged[same].equals(sequential[same]), merged[same].compare(sequential[same])
    state = json.loads((launch / "launch.json").read_text())
    assert state["status"] == "done" and [j["submissions"] for j in state["jobs"]] == [1, 1]
    assert (launch / "report.md").is_file() and "## Shards (2 of 2 merged)" in (launch / "report.md").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("tinylaunch").experiment_id])
    parents = [x for x in runs if "mlflow.parentRunId" not in x.data.tags]
    assert sorted(x.data.tags["shard"] for x in parents) == ["0/2", "1/2"]
    assert {x.data.tags["launch"] for x in parents} == {launch.name}
    assert len(runs) == 5 and {x.info.status for x in runs} == {"FINISHED"}
    assert merged["mlflow_run_id"].notna().all()  # merged again after the sync filled them in


def test_a_failing_shard_is_named_with_its_log_and_resume_reruns_only_it(tmp_path, data_dir):
    from harness.run import results

    suite = write_suite(tmp_path / "s.yaml", """
        suite: tinylaunch
        defaults: {batch_size: 64, epochs: 1, seed: 0, train_limit: 256, val_limit: 256}
        experiments:
          - {name: sample, kind: train, model: lenet, lr: 0.1, dataset: fashion_mnist_sample}
          - {name: full,   kind: train, model: lenet, lr: 0.1, dataset: fashion_mnist}
    """)
    data = tmp_path / "data"
    data.mkdir()  # empty: shard 1 (dataset fashion_mnist) fails its data check, shard 0 needs none
    r = run_cli("launch", suite, "--shards", "2", "--no-tracking", "--data-dir", data, "--out", tmp_path / "out")
    launch = launch_dir(tmp_path / "out")
    log = launch / "logs" / "shard-1.log"
    assert r.returncode == 1, r.stderr
    assert f"error: shard 1/2 did not finish (failed, exit status 2); its log {log} ends:" in r.stderr
    assert "    error: " in r.stderr  # the shard's own message, from its log
    assert "shard 0/2 did not finish" not in r.stderr and "launch --resume" in r.stderr
    assert list(results.load(launch)["experiment"]) == ["sample"]
    first_log = (launch / "logs" / "shard-0.log").read_text()

    shutil.copytree(data_dir / "FashionMNIST", data / "FashionMNIST")  # the data arrives
    r = run_cli("launch", "--resume", launch)
    assert r.returncode == 0, r.stderr
    assert "resubmitting 1 shard(s) (1)" in r.stderr
    state = json.loads((launch / "launch.json").read_text())
    assert [j["submissions"] for j in state["jobs"]] == [1, 2] and state["status"] == "done"
    assert (launch / "logs" / "shard-0.log").read_text() == first_log  # shard 0 did not run again
    assert list(results.load(launch)["experiment"]) == ["sample", "full"]


def test_an_interrupted_launch_cancels_its_shards_and_resume_continues_them(tmp_path):
    from harness.run import results

    suite = write_suite(tmp_path / "s.yaml", LENET.replace("epochs: 1", "epochs: 2"))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "harness", "launch", str(suite), "--shards", "2",
                                 "--no-tracking", "--out", str(out)], cwd=REPO, env=env, stderr=err,
                                stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not all(list((out / "tinylaunch").glob(f"*-launch-*/shards/{i}/tinylaunch/*/state.json"))
                      for i in (0, 1)):
            assert proc.poll() is None and time.monotonic() < deadline, "the shards never started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    stderr = (tmp_path / "stderr").read_text()
    launch = launch_dir(out)
    assert f"python -m harness launch --resume {launch}" in stderr and "Traceback" not in stderr
    state = json.loads((launch / "launch.json").read_text())
    assert state["status"] == "interrupted"
    assert all(j["state"] in ("cancelled", "done") for j in state["jobs"]), state["jobs"]
    # resumed under other CPU threads than the shards were made with: refused before anything is submitted
    (shard0,) = (launch / "shards" / "0" / "tinylaunch").iterdir()
    made = json.loads((shard0 / "env.json").read_text())["torch_threads"]
    before = (launch / "launch.json").read_bytes()
    r = subprocess.run([sys.executable, "-m", "harness", "launch", "--resume", str(launch)], cwd=REPO,
                       env=env | {"OMP_NUM_THREADS": str(made + 1)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"error: launch --resume {launch}: shard " in r.stderr  # 0, unless it had finished before the signal
    assert f"was made under other settings: CPU threads {made} " \
           f"(now {made + 1}); resume it as it was made: OMP_NUM_THREADS={made} python -m harness launch --resume " \
           f"{launch} (or start a new launch)" in r.stderr
    assert (launch / "launch.json").read_bytes() == before
    r = run_cli("launch", "--resume", launch)
    assert r.returncode == 0, r.stderr
    for i in (0, 1):  # continued (run --resume of its run directory), not started over
        assert len(list((launch / "shards" / str(i) / "tinylaunch").iterdir())) == 1
    assert list(results.load(launch)["experiment"]) == ["lenet[seed=0]", "lenet[seed=1]", "lenet[seed=2]"]


def test_a_shard_killed_during_launch_has_its_mlflow_runs_ended_killed(tmp_path, mlflow_uri):
    """A shard's process killed outright (SIGKILL: no `close` in its journal): the launcher, which sees it
    gone, ends its parent and child runs KILLED when it syncs, and `launch --resume` finishes them."""
    from mlflow.tracking import MlflowClient

    suite = write_suite(tmp_path / "s.yaml", LENET.replace("epochs: 1", "epochs: 30"))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "harness", "launch", str(suite), "--shards", "2",
                                 "--device", "cpu", "--out", str(out), "--tracking-uri", mlflow_uri],
                                cwd=REPO, env=env, stderr=err, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        journals = []
        while not any('"start_child"' in j.read_text() for j in journals):  # shard 0 is inside its first task
            assert proc.poll() is None and time.monotonic() < deadline, "shard 0 never started a task"
            time.sleep(0.2)
            journals = list((out / "tinylaunch").glob("*-launch-*/shards/0/tinylaunch/*/tracking.jsonl"))
        launch = launch_dir(out)
        handle = json.loads((launch / "launch.json").read_text())["jobs"][0]["handle"]
        os.killpg(int(handle.split(":")[0]), signal.SIGKILL)
        assert proc.wait(timeout=300) == 1
    stderr = (tmp_path / "stderr").read_text()
    assert "shard 0/2 did not finish (failed, exit status -9)" in stderr and "Traceback" not in stderr, stderr
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("tinylaunch").experiment_id
    runs = client.search_runs([experiment])
    parents = {x.data.tags["shard"]: x.info.run_id for x in runs if "mlflow.parentRunId" not in x.data.tags}
    by_shard = {s: [x for x in runs if parents[s] in (x.info.run_id, x.data.tags.get("mlflow.parentRunId"))]
                for s in ("0/2", "1/2")}
    assert {x.info.status for x in by_shard["0/2"]} == {"KILLED"} and len(by_shard["0/2"]) == 2, \
        [(x.info.run_name, x.info.status) for x in runs]  # the parent and the child that was running
    assert all(x.info.end_time for x in by_shard["0/2"])
    assert {x.info.status for x in by_shard["1/2"]} == {"FINISHED"}
    assert '"op": "close"' in journals[0].read_text()  # later syncs of the run directory see it too

    r = run_cli("launch", "--resume", launch)
    assert r.returncode == 0, r.stderr
    runs = client.search_runs([experiment])
    assert len(runs) == 5 and {x.info.status for x in runs} == {"FINISHED"}, \
        [(x.info.run_name, x.info.status) for x in runs]


def test_sigterm_during_the_final_sync_leaves_nothing_running_and_names_the_resume(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    suite = write_suite(tmp_path / "s.yaml", LENET.replace("matrix: {seed: [0, 1, 2]}", "matrix: {seed: [0, 1]}"))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "harness", "launch", str(suite), "--shards", "2",
                                 "--device", "cpu", "--out", str(out), "--tracking-uri", mlflow_uri],
                                cwd=REPO, env=env, stderr=err, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300

        def syncing() -> bool:  # the shards are done and the launcher's sync has created a run
            try:
                with closing(sqlite3.connect(mlflow_uri.removeprefix("sqlite:///"), timeout=0.1)) as db:
                    return db.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
            except sqlite3.OperationalError:  # locked by the writer this instant
                return False

        while not syncing():
            assert proc.poll() is None and time.monotonic() < deadline, "the launch never synced"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    stderr = (tmp_path / "stderr").read_text()
    launch = launch_dir(out)
    assert f"python -m harness launch --resume {launch}" in stderr and "Traceback" not in stderr, stderr
    assert json.loads((launch / "launch.json").read_text())["status"] == "interrupted"
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("tinylaunch")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert "RUNNING" not in {x.info.status for x in runs}, [(x.info.run_name, x.info.status) for x in runs]

    r = run_cli("launch", "--resume", launch)
    assert r.returncode == 0, r.stderr
    assert json.loads((launch / "launch.json").read_text())["status"] == "done"
    runs = client.search_runs([client.get_experiment_by_name("tinylaunch").experiment_id])
    assert len(runs) == 4 and {x.info.status for x in runs} == {"FINISHED"}
