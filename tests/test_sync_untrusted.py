"""`harness sync` of a run directory from another machine: its contents are untrusted. A journal
with a record out of shape, or an artifact outside the run directory (absolute, `..`, or through a
link anywhere on its way), is refused with exit 2 naming the journal's line, before anything is
logged: the MLflow store holds no experiment and no run afterwards, and no artifact was copied.
Real run directories (a real `harness run --no-tracking`), real subprocesses, real SQLite stores."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, write_suite
from mlflow.tracking import MlflowClient

from harness.run import journal, journal_records
from harness.run.null import NullTracker

SUITE = """
suite: untrusted
defaults: {min_run_time_s: 0.01, threads: 1}
experiments:
  - {name: corr, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
"""


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    """A run directory as an offline GPU node leaves it (2 kernel rows, no tracking)."""
    tmp = tmp_path_factory.mktemp("untrusted")
    write_suite(tmp / "s.yaml", SUITE)
    proc = run_cli("run", "s.yaml", "--no-tracking", "--device", "cpu", "--out", tmp / "results", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp / "results" / "untrusted").iterdir()
    return run_dir


@pytest.fixture
def copy(honest, tmp_path) -> Path:
    """A copy of the honest run directory, to tamper with."""
    return Path(shutil.copytree(honest, tmp_path / "node" / honest.name, symlinks=True))


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / journal.FILE).read_text().splitlines()]


def rewrite(run_dir: Path, records: list[dict]) -> None:
    (run_dir / journal.FILE).write_text("".join(json.dumps(r) + "\n" for r in records))


def tamper(run_dir: Path, op: str, change, last: bool = False) -> int:
    """Apply `change` (record -> None) to the first (or last) record of `op`; returns its line number."""
    records = lines(run_dir)
    index = [i for i, r in enumerate(records) if r["op"] == op][-1 if last else 0]
    change(records[index])
    rewrite(run_dir, records)
    return index + 1


def refused(run_dir: Path, tmp_path: Path, store: str, *expected: str):
    """Sync `run_dir`: exit 2, one message naming what `expected` says, and nothing logged or copied."""
    out = tmp_path / "out"
    proc = run_cli("sync", run_dir, "--tracking-uri", store, "--out", out, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert "nothing was synced" in proc.stderr or "copy the whole run directory" in proc.stderr, proc.stderr
    client = MlflowClient(tracking_uri=store)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert client.search_runs(["0"]) == []
    assert not out.exists()  # no artifact root, no default store: nothing created
    return proc


def test_the_honest_run_directory_syncs(copy, tmp_path, mlflow_uri):
    """The base every other test tampers with is itself fine: the refusals below are the tampering's."""
    proc = run_cli("sync", copy, "--tracking-uri", mlflow_uri, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0 and "3 created" in proc.stdout, proc.stdout + proc.stderr
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("untrusted").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {f.path for f in client.list_artifacts(parent.info.run_id)} >= {"env.json", "results.parquet", "suite.yaml"}


@pytest.mark.parametrize("path, shown", [
    ("../../etc/passwd", "'../../etc/passwd': is not a path inside the run directory"),
    ("/etc/passwd", "'/etc/passwd': is not a path inside the run directory"),
    ("plots/../../secret", "is not a path inside the run directory"),
    (".", "'.': is not a path inside the run directory"),
])
def test_an_artifact_path_out_of_the_run_directory_is_refused(copy, tmp_path, mlflow_uri, path, shown):
    line = tamper(copy, "artifacts", lambda r: r["paths"].append(path), last=True)
    refused(copy, tmp_path, mlflow_uri, f"{copy / journal.FILE}:{line}: `artifacts` record: `paths.", shown,
            "(valid: relative to it, without `..`)")


def test_a_folder_linked_out_of_the_run_directory_is_refused(copy, tmp_path, mlflow_uri):
    # a folder of its own name (the run already has a plots/ folder)
    (copy / "linked").symlink_to("/etc", target_is_directory=True)
    line = tamper(copy, "artifacts", lambda r: r["paths"].append("linked/passwd"), last=True)
    refused(copy, tmp_path, mlflow_uri, f"{journal.FILE}:{line}: artifact 'linked/passwd' resolves to /etc/passwd, "
            f"not inside the run directory {copy.resolve()}")
    line = tamper(copy, "artifacts", lambda r: r["paths"].__setitem__(-1, "linked"), last=True)
    refused(copy, tmp_path, mlflow_uri, f"{journal.FILE}:{line}: artifact 'linked' resolves to /etc, not inside")
    tamper(copy, "artifacts", lambda r: r["paths"].__setitem__(-1, "linked/no-such-file"), last=True)
    refused(copy, tmp_path, mlflow_uri, f"{journal.FILE}:{line}: artifact 'linked/no-such-file' resolves to "
            f"/etc/no-such-file, not inside")


def test_a_logged_file_replaced_by_a_link_out_is_refused(copy, tmp_path, mlflow_uri):
    secret = tmp_path / "secret.txt"
    secret.write_text("the node's private key")
    (copy / "env.json").unlink()
    (copy / "env.json").symlink_to(secret)
    line = next(i for i, r in enumerate(lines(copy), 1) if r["op"] == "artifacts" and "env.json" in r["paths"])
    refused(copy, tmp_path, mlflow_uri, f"{journal.FILE}:{line}: artifact 'env.json' resolves to {secret}, not inside")


def test_a_link_out_inside_a_logged_folder_is_refused(copy, tmp_path, mlflow_uri):
    secret = tmp_path / "secret.txt"
    secret.write_text("the node's private key")
    (copy / "extra" / "deep").mkdir(parents=True)
    (copy / "extra" / "ok.txt").write_text("fine")
    (copy / "extra" / "deep" / "leak.txt").symlink_to(secret)
    line = tamper(copy, "artifacts", lambda r: r["paths"].append("extra"), last=True)
    refused(copy, tmp_path, mlflow_uri,
            f"{journal.FILE}:{line}: artifact 'extra' holds extra/deep/leak.txt, a link to {secret}, not inside")
    (copy / "extra" / "deep" / "leak.txt").unlink()
    (copy / "extra" / "deep" / "etc").symlink_to("/etc", target_is_directory=True)  # a folder link, too
    refused(copy, tmp_path, mlflow_uri, f"{journal.FILE}:{line}: artifact 'extra' holds extra/deep/etc, a link to /etc")


def test_links_that_stay_inside_the_run_directory_are_followed(copy, tmp_path, mlflow_uri):
    (copy / "extra").mkdir()
    (copy / "extra" / "suite.yaml").symlink_to(copy / "suite.yaml")
    (copy / "more").symlink_to("extra", target_is_directory=True)
    tamper(copy, "artifacts", lambda r: r["paths"].extend(["extra", "more"]), last=True)
    proc = run_cli("sync", copy, "--tracking-uri", mlflow_uri, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri=mlflow_uri)
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("untrusted").experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    assert [f.path for f in client.list_artifacts(parent.info.run_id, "extra")] == ["extra/suite.yaml"]
    assert [f.path for f in client.list_artifacts(parent.info.run_id, "more")] == ["more/suite.yaml"]


def test_a_journal_linked_out_of_the_run_directory_is_refused(copy, tmp_path, mlflow_uri):
    elsewhere = tmp_path / "elsewhere.jsonl"
    shutil.move(copy / journal.FILE, elsewhere)
    (copy / journal.FILE).symlink_to(elsewhere)
    refused(copy, tmp_path, mlflow_uri, f"{copy / journal.FILE}: a link to {elsewhere}, not inside the run directory")


def test_a_link_loop_is_refused(copy, tmp_path, mlflow_uri):
    (copy / "a").symlink_to("b")
    (copy / "b").symlink_to("a")
    line = tamper(copy, "artifacts", lambda r: r["paths"].append("a"), last=True)
    refused(copy, tmp_path, mlflow_uri, f"{journal.FILE}:{line}: artifact 'a' resolves to itself, through a loop of links")


def test_a_fifo_among_the_artifacts_is_refused_not_read(copy, tmp_path, mlflow_uri):
    import os

    os.mkfifo(copy / "pipe")  # copying it would block forever
    tamper(copy, "artifacts", lambda r: r["paths"].append("pipe"), last=True)
    refused(copy, tmp_path, mlflow_uri, "pipe (not a regular file)")


def _drop(key):
    return lambda r: r.pop(key)


def _set(key, value):
    return lambda r: r.__setitem__(key, value)


@pytest.mark.parametrize("op, change, expected", [
    ("metrics", _drop("step"), "`metrics` record: `step` is missing (valid: {\"op\": \"metrics\""),
    ("metrics", _set("step", "3"), "`metrics` record: `step` '3': Input should be a valid integer"),
    ("metrics", _set("metrics", {"wall_s": "fast"}), "`metrics.wall_s` 'fast': Input should be a valid number"),
    ("end", _set("status", "DONE"), "`status` 'DONE': Input should be 'FINISHED', 'FAILED' or 'KILLED'"),
    ("end", _set("op", "finish"), "op 'finish' is unknown (valid ops: start, start_child, resume"),
    ("metrics", _set("id", "offline:ghost"), "`id` 'offline:ghost' is a run the journal never started"),
    ("start_child", _set("parent", "offline:ghost"), "`parent` 'offline:ghost' is not the run the journal started"),
    ("start", _set("t", 1_700_000_000), "`t` 1700000000: Input should be greater than or equal to 946684800000 "
                                        "(valid: ms since the epoch"),
    ("start", _set("suite", "../x"), "`suite` '../x': String should match pattern"),
    ("artifacts", _set("paths", "suite.yaml"), "`paths` 'suite.yaml': Input should be a valid list"),
])
def test_a_record_out_of_shape_is_refused_with_its_line(copy, tmp_path, mlflow_uri, op, change, expected):
    line = tamper(copy, op, change)
    refused(copy, tmp_path, mlflow_uri, f"{copy / journal.FILE}:{line}: ", expected)


def test_a_bad_run_directory_among_several_is_named_and_skipped_and_nothing_of_it_synced(honest, tmp_path,
                                                                                          mlflow_uri):
    """Found below a folder: the bad one (an artifact outside it) is named in a warning and nothing of
    it is logged; the good one is synced; exit 1. Named itself it is refused whole (the tests above)."""
    folder = tmp_path / "node"
    good = Path(shutil.copytree(honest, folder / "a-good"))
    bad = Path(shutil.copytree(honest, folder / "b-bad"))
    tamper(bad, "artifacts", lambda r: r["paths"].append("/etc/passwd"), last=True)
    proc = run_cli("sync", folder, "--tracking-uri", mlflow_uri, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " INFO mlflow" not in line]
    assert len(lines) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"warning: {bad / journal.FILE}:") and lines[0].endswith("; skipped"), proc.stderr
    assert lines[1].startswith("1 run directory skipped (named above): not synced"), proc.stderr
    assert f"synced {good}: " in proc.stdout and str(bad) not in proc.stdout
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.data.tags.get("run_dir") for r in runs if "mlflow.parentRunId" not in r.data.tags} == {str(honest)}
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1  # the good copy's parent alone


def test_a_damaged_results_file_is_refused_before_anything_is_logged(copy, tmp_path, mlflow_uri):
    (copy / "results.parquet").write_bytes(b"PAR1 cut short")
    refused(copy, tmp_path, mlflow_uri, f"{copy / 'results.parquet'}: not a readable results file (ArrowInvalid")


def test_without_a_tracking_uri_a_refusal_creates_no_store(copy, tmp_path):
    tamper(copy, "end", _set("status", "DONE"))
    proc = run_cli("sync", copy, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2 and "`status` 'DONE'" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_last_line_cut_by_a_kill_is_dropped_and_the_rest_syncs(copy, tmp_path, mlflow_uri):
    text = (copy / journal.FILE).read_text()
    (copy / journal.FILE).write_text(text + '{"op": "end", "t": 17')
    proc = run_cli("sync", copy, "--tracking-uri", mlflow_uri, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0 and "3 created" in proc.stdout, proc.stderr
    # the same cut on an earlier line is damage, not a kill
    (copy / journal.FILE).write_text('{"op": "end", "t": 17\n' + text)
    proc = run_cli("sync", copy, "--tracking-uri", mlflow_uri, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2 and f"{journal.FILE}:1: not a JSON record" in proc.stderr, proc.stderr


# In-process: the checks of journal.read, one record at a time (sync refuses what read refuses).

T = 1_767_225_600_000  # 2026-01-01


def journal_of(tmp_path: Path, *extra: dict) -> Path:
    records = [{"op": "start", "t": T, "id": "offline:r", "suite": "s", "name": "r", "params": {"a": {"b": 1}},
                "tags": {"x": None}},
               {"op": "start_child", "t": T, "id": "offline:c", "name": "c/v/in=8x8 k=2x2", "parent": "offline:r",
                "params": {}, "tags": {}}, *extra]
    rewrite(tmp_path, records)
    return tmp_path


@pytest.mark.parametrize("record, expected", [
    ({"op": "metrics", "t": T, "id": "offline:c", "step": True, "metrics": {}}, "`step` True: Input should be a valid integer"),
    ({"op": "metrics", "t": T, "id": "offline:c", "step": -1, "metrics": {}}, "`step` -1: Input should be greater than"),
    ({"op": "metrics", "t": T, "id": "offline:c", "step": 1, "metrics": {"a": True}}, "`metrics.a` True: Input should be"),
    ({"op": "metrics", "t": T, "id": "offline:c", "step": 1, "metrics": {"a": 10**400}}, "Input should be a valid number"),
    ({"op": "metrics", "t": T, "id": "offline:c", "step": 1, "metrics": {"a\tb": 1.0}}, "holds characters MLflow refuses"),
    ({"op": "metrics", "t": T, "id": "offline:c", "step": 1, "metrics": {"k" * 251: 1.0}}, "is 251 characters long (valid: up to 250)"),
    ({"op": "metrics", "t": T, "id": "offline:c", "step": 1, "metrics": {"a//b": 1.0}}, "is a path MLflow refuses"),
    ({"op": "metrics", "t": T, "id": "offline:c", "step": 1, "metrics": {}, "x": 1}, "`x` is not a field of a `metrics` record"),
    ({"op": "metrics", "t": T * 1000, "id": "offline:c", "step": 1, "metrics": {}}, "`t` 1767225600000000: Input should be less"),
    ({"op": "dataset", "t": T, "id": "offline:c", "name": "d", "digest": "x" * 37, "source": "s", "context": "train"},
     "`digest` 'xxxxxxxxxx"),
    ({"op": "artifacts", "t": T, "id": "offline:c", "paths": ["a\x00b"]}, "is not a path inside the run directory"),
    ({"op": "start_child", "t": T, "id": "offline:d", "name": "c/v/in=8x8 k=2x2", "parent": "offline:r", "params": {},
      "tags": {}}, "`name` 'c/v/in=8x8 k=2x2' is the name of the child started on line 2"),
    ({"op": "start_child", "t": T, "id": "offline:c", "name": "d", "parent": "offline:r", "params": {}, "tags": {}},
     "`id` 'offline:c' was started on line 2 already"),
    ({"op": "start_child", "t": T, "id": "offline:d", "name": "d", "parent": "offline:r", "params": {"a b/c": {"x|y": 1}},
      "tags": {}}, "key 'a b/c.x|y' holds characters MLflow refuses"),
    ({"op": "start_child", "t": T, "id": "offline:d", "name": "d", "parent": "offline:r", "params": {"a.b": 1, "a": {"b": 2}},
      "tags": {}}, "key 'a.b' twice"),
    ({"op": "start", "t": T, "id": "offline:r2", "suite": "s", "name": "r2", "params": {}, "tags": {}},
     "a second `start` (the run started on line 1)"),
    ({"op": "resume", "t": T, "id": "offline:c", "suite": "s"}, "`resume` of 'offline:c' in suite 's'"),
    ({"op": "resume", "t": T, "id": "offline:r", "suite": "other"}, "`resume` of 'offline:r' in suite 'other'"),
    ({"op": "resume_child", "t": T, "id": "offline:r"}, "`resume_child` of the parent run 'offline:r'"),
    ({"op": "close", "t": T, "id": "offline:c"}, "`close` record: `id` 'offline:c'"),
    ({"t": T, "id": "offline:c"}, "no `op` (valid ops: start, start_child"),
    (["op", "end"], "a JSON list, not a record"),
])
def test_journal_read_refuses_each_record_out_of_shape(tmp_path, record, expected):
    journal_of(tmp_path, record, {"op": "end", "t": T, "id": "offline:r", "status": "FINISHED"})
    with pytest.raises(ValueError) as e:
        journal.read(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / journal.FILE}:3: "), e.value
    assert expected in str(e.value)
    assert "(valid" in str(e.value)


def test_journal_read_accepts_what_the_journal_writes(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"png")
    j = journal.Journal(NullTracker(), tmp_path)
    parent = j.start("s", "run", {"argv": ["--x"], "nested": {"a": 1, "b": {}}}, {"t": None, "sp ace": "ok"})
    child = j.start_child("lenet[lr=0.1,seed=0]/lenet/28x28", {"lr": 0.1}, {"kind": "train"})
    j.log_dataset(child, "fashion-mnist", "d" * 16, "/data/FashionMNIST", "training")
    j.log_metrics(child, {"val_acc": float("nan"), "loss": float("inf"), "skipped": None}, step=2)
    j.log_artifacts(child, [tmp_path / "plots" / "a.png", tmp_path / "plots"])
    j.close()
    j.resume("s", parent)
    j.resume_child(child)
    j.end(child, "FINISHED")
    j.end(parent, "FINISHED")
    records = journal.read(tmp_path)
    assert [r["op"] for r in records] == ["start", "start_child", "dataset", "metrics", "artifacts", "close",
                                          "resume", "resume_child", "end", "end"]
    assert records[4]["paths"] == ["plots/a.png", "plots"]
    assert math.isnan(records[3]["metrics"]["val_acc"]) and records[3]["metrics"]["loss"] == math.inf


def test_journal_read_bounds_the_file_and_its_lines(tmp_path):
    journal_of(tmp_path, {"op": "metrics", "t": T, "id": "offline:c", "step": 1, "metrics": {"a": 1.0}, "pad": "x" * 2**20},
               {"op": "end", "t": T, "id": "offline:r", "status": "FINISHED"})
    with pytest.raises(ValueError, match=r"tracking.jsonl:3: a line of 1,048,6\d\d bytes \(valid: 1 MiB at most\)"):
        journal.read(tmp_path)
    with open(tmp_path / journal.FILE, "r+b") as f:
        f.truncate(journal_records.MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ValueError, match=r"tracking.jsonl: 268,435,457 bytes \(valid: a journal of 256 MiB at most\)"):
        journal.read(tmp_path)


def test_the_journal_writer_refuses_an_artifact_outside_the_run_directory(tmp_path):
    (tmp_path / "run").mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    j = journal.Journal(NullTracker(), tmp_path / "run")
    run = j.start("s", "run", {}, {})
    with pytest.raises(ValueError, match="is not inside the run directory"):
        j.log_artifacts(run, [outside])
    (tmp_path / "run" / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="is not inside the run directory"):
        j.log_artifacts(run, [tmp_path / "run" / "link"])
    assert [r["op"] for r in journal.read(tmp_path / "run")] == ["start"]  # nothing sync would refuse
