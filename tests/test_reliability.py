"""Nothing lost, nothing stuck: real signals into real `python -m harness run` processes, runs
interrupted before their first row, concurrent runs into a fresh results root, a kill while the
store is created, input errors that must create nothing, and faults that cannot be made for real
in a test (a full disk) injected where they would strike."""
from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli, write_suite, store_copy

from harness.run import results

TWO_LENETS = """
suite: rel
defaults: {epochs: 2, batch_size: 32, train_limit: 2000, val_limit: 500, seed: 0}
experiments:
  - {name: first, kind: train, model: lenet, lr: 0.1}
  - {name: second, kind: train, model: lenet, lr: 0.05}
"""


def _popen(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _resume_command(stderr: str) -> list[str]:
    """The `--resume` command an interrupted run printed, as arguments after `python -m harness`."""
    match = re.search(r"Continue it with:\n  (python -m harness .*)", stderr)
    assert match, stderr
    return shlex.split(match.group(1))[3:]


def _runs(uri: str, suite: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _steps_without_times(run_dir: Path) -> list[tuple]:
    import pandas as pd

    steps = pd.read_csv(run_dir / "steps.csv")
    steps = steps[~steps.metric.isin(["images_per_s", "epoch_time_s"])]
    return sorted(steps[["experiment", "step", "metric", "value"]].itertuples(index=False, name=None))


def test_sigterm_mid_epoch_then_resume_gives_the_uninterrupted_run(tmp_path, data_dir, mlflow_uri):
    """SIGTERM (Slurm's, Kubernetes', `timeout`'s) in the second experiment's second epoch: exit 143,
    every MLflow run closed, the first experiment's rows *and* per-epoch steps kept; the printed
    --resume command ends with the same fingerprints and steps as an uninterrupted run, and no
    checkpoint is left behind."""
    suite = write_suite(tmp_path / "rel.yaml", TWO_LENETS)
    whole = run_cli("run", suite, "--data-dir", data_dir, "--out", tmp_path / "whole", "--no-tracking", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    (whole_dir,) = (tmp_path / "whole" / "rel").iterdir()

    proc = _popen("run", suite, "--data-dir", data_dir, "--out", tmp_path / "r", "--tracking-uri", mlflow_uri,
                  cwd=tmp_path)
    for line in proc.stderr:
        if "second epoch 1/2:" in line:  # printed once epoch 1 of `second` is checkpointed: epoch 2 is under way
            break
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    (run_dir,) = (tmp_path / "r" / "rel").iterdir()
    assert results.load(run_dir).experiment.tolist() == ["first"]
    kept = _steps_without_times(run_dir)  # saved with the results, and what `second` measured before the signal
    assert [s for s in kept if s[0] == "first"] == [s for s in _steps_without_times(whole_dir) if s[0] == "first"]
    statuses = {r.info.run_name: r.info.status for r in _runs(mlflow_uri, "rel")}
    assert "RUNNING" not in statuses.values(), statuses
    assert statuses[run_dir.name] == "KILLED"
    assert json.loads((run_dir / "tracking.jsonl").read_text().splitlines()[-1])["op"] == "close"
    assert (run_dir / "checkpoints" / "second" / "last.pt").is_file()
    assert not (run_dir / "checkpoints" / "first").exists()  # finished: removed

    resumed = run_cli(*_resume_command(err), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "second: resumed after epoch 1" in resumed.stderr
    df, ref = results.load(run_dir).set_index("experiment"), results.load(whole_dir).set_index("experiment")
    for exp in ("first", "second"):
        assert df.loc[exp, "fingerprint"] == ref.loc[exp, "fingerprint"], exp
        assert df.loc[exp, "epoch_fingerprints"] == ref.loc[exp, "epoch_fingerprints"], exp  # epoch 1's kept
    assert _steps_without_times(run_dir) == _steps_without_times(whole_dir)
    runs = _runs(mlflow_uri, "rel")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}  # continued, not duplicated
    assert not (run_dir / "checkpoints").exists()


def test_keep_checkpoints_keeps_a_finished_experiments_checkpoint(tmp_path, data_dir):
    suite = write_suite(tmp_path / "rel.yaml", TWO_LENETS)
    proc = run_cli("run", suite, "-k", "first", "--data-dir", data_dir, "--out", tmp_path / "r", "--no-tracking",
                   "--keep-checkpoints", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "r" / "rel").iterdir()
    assert (run_dir / "checkpoints" / "first" / "last.pt").is_file()


SLOW_FIRST = """
suite: early
experiments:
  - {name: slow, kind: kernel, kernel: corr2d, variants: [loop], min_run_time_s: 3, sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
  - {name: quick, kind: learn_kernel, iterations: 2}
"""


def test_ctrl_c_before_the_first_row_leaves_a_run_that_reports_and_resumes(tmp_path):
    """A 0-row results file is a result: report and dashboard read the root, --resume finishes it;
    the resume command finds the run's store by itself (no --tracking-uri, no --out)."""
    suite = write_suite(tmp_path / "early.yaml", SLOW_FIRST)
    out = tmp_path / "res"
    other = run_cli("run", write_suite(tmp_path / "q.yaml", QUICK), "--out", out, cwd=tmp_path)  # a root holds others
    assert other.returncode == 0, other.stderr
    proc = _popen("run", suite, "--out", out, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(out.glob("early/*/state.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # inside the 3 s of timing `slow`
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run_dir,) = (out / "early").iterdir()
    assert f"0 finished rows are in {run_dir}" in err and "Traceback" not in err
    assert len(results.load(run_dir)) == 0
    assert {r.info.status for r in _runs(f"sqlite:///{out.resolve() / 'mlflow.db'}", "early")} == {"KILLED"}

    alone = run_cli("report", out / "early", cwd=tmp_path)  # only the interrupted run: said so, exit 2
    assert alone.returncode == 2 and "no finished rows yet: the 1 run(s) found stopped before their first row" \
        in alone.stderr and "Traceback" not in alone.stderr, alone.stderr
    report = run_cli("report", out, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    dash = run_cli("dashboard", out, "--out", tmp_path / "site", cwd=tmp_path)
    assert dash.returncode == 0, dash.stderr

    command = _resume_command(err)
    assert "--tracking-uri" not in command and "--out" not in command
    resumed = run_cli(*command, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert results.load(run_dir).experiment.tolist() == ["slow", "quick"]
    runs = _runs(f"sqlite:///{out.resolve() / 'mlflow.db'}", "early")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}


QUICK = "suite: q\nexperiments:\n  - {name: b, kind: learn_kernel, iterations: 2}\n"


def test_concurrent_runs_into_a_fresh_results_root_all_succeed(tmp_path):
    suite = write_suite(tmp_path / "q.yaml", QUICK)
    procs = [_popen("run", suite, "--out", tmp_path / "fresh", cwd=tmp_path) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = _runs(f"sqlite:///{(tmp_path / 'fresh' / 'mlflow.db').resolve()}", "q")
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}  # 3 parents, 3 children


def test_a_kill_while_the_store_is_created_leaves_no_store_that_later_commands_fail_on(tmp_path):
    suite = write_suite(tmp_path / "q.yaml", QUICK)
    root = tmp_path / "fresh"
    proc = _popen("run", suite, "--out", root, cwd=tmp_path)
    deadline, seen = time.monotonic() + 120, False
    while time.monotonic() < deadline and proc.poll() is None:
        if list(root.glob(".mlflow.db.*.creating")):
            seen = True
            break
        time.sleep(0.005)
    time.sleep(0.3)  # somewhere inside MLflow's migrations
    proc.kill()
    proc.communicate()
    assert seen, "the store was not created in a temp file beside mlflow.db"
    db = root / "mlflow.db"
    assert not db.exists() or db.stat().st_size > 0
    again = run_cli("run", suite, "--out", root, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not list(root.glob(".mlflow.db.*.creating"))



def test_what_a_creator_killed_mid_transaction_leaves_is_cleared_by_the_next_command(tmp_path, _migrated_store):
    # SQLite's rollback journal of the temp store (.mlflow.db.<pid>.creating-journal) outlived the kill,
    # the next creator and any command that found the store made by another process meanwhile
    suite = write_suite(tmp_path / "q.yaml", QUICK)
    root = tmp_path / "fresh"
    for _ in range(5):  # a journal exists only inside each of the migrations' write transactions
        shutil.rmtree(root, ignore_errors=True)
        creator = _popen("run", suite, "--out", root, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and creator.poll() is None and not list(root.glob(".mlflow.db.*-journal")):
            time.sleep(0.001)
        creator.kill()
        creator.communicate()
        if list(root.glob(".mlflow.db.*.creating-journal")):
            break
    else:
        raise AssertionError("no kill landed inside a transaction of the store's creation in 5 tries")
    made = tmp_path / "made"  # the same leftovers beside a store another process completed meanwhile
    made.mkdir()
    for left in root.glob(".mlflow.db.*"):
        shutil.copyfile(left, made / left.name)
    store_copy(_migrated_store, made / "mlflow.db")
    for out in (root, made):  # the next creator; a command that finds the store made
        again = run_cli("run", suite, "--out", out, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert not list(out.glob(".mlflow.db.*.creating*")), sorted(p.name for p in out.iterdir())


class _SilentServer:
    """A TCP server that accepts connections and never answers: a tracking server that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)


def _nothing_created(out: Path, before: set[str]) -> None:
    after = {str(p.relative_to(out)) for p in out.rglob("*")} if out.exists() else set()
    assert after == before, sorted(after - before)


def _input_error(tmp_path: Path, *args, out: Path, expect: str):
    before = {str(p.relative_to(out)) for p in out.rglob("*")} if out.exists() and out.is_dir() else set()
    proc = run_cli("run", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and expect in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    if out.is_dir():
        _nothing_created(out, before)
    return proc


def test_input_errors_exit_2_and_create_nothing(tmp_path, mlflow_uri):
    suite = write_suite(tmp_path / "q.yaml", QUICK)
    (tmp_path / "a_file").write_text("x")
    _input_error(tmp_path, suite, "--out", tmp_path / "a_file", out=tmp_path / "a_file",
                 expect="is a file, not a directory")
    _input_error(tmp_path, suite, "--out", tmp_path / "a_file" / "sub", out=tmp_path / "a_file",
                 expect="a_file is a file, not a directory")

    (tmp_path / "dir_store" / "mlflow.db").mkdir(parents=True)
    _input_error(tmp_path, suite, "--out", tmp_path / "dir_store", out=tmp_path / "dir_store",
                 expect="mlflow.db: is a directory, not an SQLite file; move it aside")
    (tmp_path / "bad_store").mkdir()
    (tmp_path / "bad_store" / "mlflow.db").write_bytes(b"not a database at all" * 100)
    _input_error(tmp_path, suite, "--out", tmp_path / "bad_store", out=tmp_path / "bad_store",
                 expect="mlflow.db: not an SQLite database")
    (tmp_path / "cut_store").mkdir()  # an SQLite file cut short: the right header, then nothing
    (tmp_path / "cut_store" / "mlflow.db").write_bytes(Path(mlflow_uri[len("sqlite:///"):]).read_bytes()[:1000])
    _input_error(tmp_path, suite, "--out", tmp_path / "cut_store", out=tmp_path / "cut_store",
                 expect="mlflow.db: a damaged SQLite database (database disk image is malformed)")

    server = _SilentServer()
    proc = _input_error(tmp_path, suite, "--out", tmp_path / "srv", "--tracking-uri", server.uri,
                        out=tmp_path / "srv", expect=f"--tracking-uri {server.uri}: the tracking server does not answer")
    assert "timed out" in proc.stderr and len(server.accepted) == 1  # one probe, no minutes of retries
    assert not (tmp_path / "srv").exists()


def test_resume_against_another_store_is_refused(tmp_path, mlflow_uri, _migrated_store):

    suite = write_suite(tmp_path / "q.yaml", QUICK)
    first = run_cli("run", suite, "--out", tmp_path / "r", "--tracking-uri", mlflow_uri, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "r" / "q").iterdir()
    other = store_copy(_migrated_store, tmp_path / "other.db")
    proc = _input_error(tmp_path, suite, "--resume", run_dir, "--tracking-uri", other, out=tmp_path / "r",
                        expect=f"--resume {run_dir}: its MLflow run")
    assert "it was tracked in another store (" + mlflow_uri in proc.stderr
    assert _runs(other, "q") == []


# ---- faults injected where they would strike ------------------------------------------------------

def test_a_full_disk_still_closes_every_mlflow_run_and_the_journal(tmp_path, mlflow_uri, monkeypatch, capsys):
    """ENOSPC on the first results write (after experiment 1): exit 1 with the error and the resume
    command, no MLflow run left RUNNING, the journal's last record `close`, and no half-written
    results pair."""
    from harness import cli
    from harness.core import io

    suite = write_suite(tmp_path / "two.yaml", QUICK + "  - {name: c, kind: learn_kernel, iterations: 2}\n")

    def full(writes):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "atomic_write_all", full)
    monkeypatch.setattr(results, "atomic_write_all", full)
    code = cli.main(["run", str(suite), "--out", str(tmp_path / "r"), "--tracking-uri", mlflow_uri])
    err = capsys.readouterr().err
    assert code == 1
    (run_dir,) = (tmp_path / "r" / "q").iterdir()
    assert "error: the run stopped: the disk is full (No space left on device)" in err
    assert f"the 1 finished rows could not be written into {run_dir}: the disk is full" in err  # none claimed
    assert "its open MLflow runs ended KILLED" in err and f"--resume {run_dir}" in err
    runs = _runs(mlflow_uri, "q")
    assert runs and "RUNNING" not in {r.info.status for r in runs}
    assert json.loads((run_dir / "tracking.jsonl").read_text().splitlines()[-1])["op"] == "close"
    assert not (run_dir / "results.csv").exists() and not (run_dir / "results.parquet").exists()


def test_results_csv_and_parquet_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    import pandas as pd

    row = {"suite": "s", "run_id": "r", "experiment": "e", "kind": "kernel", "variant": "v", "size": "1",
           "status": "ok"}
    results.save([row], tmp_path)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        results.save([row, row | {"variant": "w"}], tmp_path)
    monkeypatch.undo()
    assert len(results.load(tmp_path / "results.csv")) == len(results.load(tmp_path / "results.parquet")) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_value_the_schema_cannot_hold_is_a_failed_row_not_a_lost_run(tmp_path, monkeypatch):
    from harness.kernels import bench
    from harness.run.null import NullTracker
    from harness.run.runner import run_suite
    from harness.suite import load_suite

    monkeypatch.setattr(bench, "_learn", lambda spec, device, ctx: {"status": "ok", "loss_final": "not a number"})
    path = write_suite(tmp_path / "s.yaml", QUICK + "  - {name: k, kind: kernel, kernel: corr2d, variants: [native], "
                                              "min_run_time_s: 0.01, sizes: {input: [[5, 5]], kernel: [[2, 2]]}}\n")
    outcome = run_suite(load_suite(path), device="cpu", out_root=tmp_path / "r", tracker=NullTracker())
    assert [(r["experiment"], r["status"]) for r in outcome.rows] == [("b", "failed"), ("k", "ok")]
    assert "the task's result cannot be stored" in outcome.rows[0]["error"]
    assert results.load(outcome.run_dir).status.tolist() == ["failed", "ok"]


def test_a_tracking_error_inside_a_finished_task_keeps_the_row_and_the_journal(tmp_path, mlflow_uri):
    from mlflow.exceptions import MlflowException

    from harness.run.runner import run_suite
    from harness.suite import load_suite
    from harness.track.tracking import MlflowTracker

    class Flaky(MlflowTracker):
        def log_metrics(self, run_id, metrics, step=None, at_ms=None):
            raise MlflowException("database is locked")

    outcome = run_suite(load_suite(write_suite(tmp_path / "q.yaml", QUICK)), device="cpu", out_root=tmp_path / "r",
                        tracker=Flaky(mlflow_uri, tmp_path / "art"))
    assert outcome.exit_code == 0 and [r["status"] for r in outcome.rows] == ["ok"]
    assert outcome.tracking_failures and "database is locked" in outcome.tracking_failures[0]
    ops = [json.loads(line)["op"] for line in (outcome.run_dir / "tracking.jsonl").read_text().splitlines()]
    assert ops.count("metrics") >= 3  # the per-iteration losses and the row's numbers, journaled all the same
    assert {r.info.status for r in _runs(mlflow_uri, "q")} == {"FINISHED"}


def test_sighup_is_handled_like_ctrl_c(tmp_path):
    suite = write_suite(tmp_path / "early.yaml", SLOW_FIRST)
    proc = _popen("run", suite, "--out", tmp_path / "r", "--no-tracking", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "r").glob("early/*/state.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 129, err
    assert "interrupted (SIGHUP)" in err and "MLflow" not in err and "--no-tracking" in err
    (run_dir,) = (tmp_path / "r" / "early").iterdir()
    assert (run_dir / "results.parquet").is_file() and (run_dir / "report.md").is_file()
