"""A full disk under the results root and its MLflow store, for real: a small tmpfs (mounted as root),
the store migrated onto it, then filled to a few hundred KB free before `run`. The run stops; what it
says must be true of the disk and the store: one plain line for the full disk, no traceback, only
the files that were written claimed, the MLflow runs it could not end named with what ends them
later; and once there is space, the `--resume` it printed finishes every run."""
from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from conftest import run_cli, store_copy, write_suite

SUITE = """
    suite: fd
    defaults: {batch_size: 64, epochs: 2, seed: 0, dataset: fashion_mnist_sample, train_limit: 256,
               val_limit: 256}
    experiments:
      - {name: a, kind: train, model: lenet, lr: 0.1}
      - {name: b, kind: train, model: lenet, lr: 0.1}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs at tmp_path/disk (skipped, saying why, where mounting is refused)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, free_kb: int) -> None:
    st = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_kb * 1024))


def statuses(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as c:
        return [s for (s,) in c.execute("SELECT status FROM runs")]


@pytest.mark.parametrize("free_kb", [900, 500, 200])
def test_a_full_disk_is_said_once_and_only_what_was_written_is_claimed(small_disk, tmp_path, _migrated_store,
                                                                         free_kb):
    suite = write_suite(tmp_path / "fd.yaml", SUITE)
    db = small_disk / "mlflow.db"
    store_copy(_migrated_store, db)
    fill(small_disk, free_kb)
    p = run_cli("run", suite, "--device", "cpu", "--out", small_disk, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    err = p.stderr
    assert "Traceback" not in err and len(err.splitlines()) < 25, err
    assert "error: the run stopped: the disk is full (No space left on device)" in err, err
    (run_dir,) = (small_disk / "fd").iterdir()
    claimed = re.search(r"finished rows are in \S+ \(([a-z, ]+)[;)]", err)
    for name in (claimed.group(1).split(", ") if claimed else []):  # each file it names is there
        assert {"results": "results.parquet", "steps": "steps.csv", "report": "report.md"}[name] in \
            {f.name for f in run_dir.iterdir()}, err
    if not claimed:
        assert "finished rows could not be written into" in err and not (run_dir / "results.parquet").exists()
    running = statuses(db).count("RUNNING")
    if "its open MLflow runs ended KILLED" in err:
        assert running == 0, err
    else:
        assert f"{running} open MLflow run(s) could not be ended: the disk is full" in err and running, err
        assert "they stay RUNNING until `--resume` below continues them" in err

    (small_disk / "filler").unlink()  # space again: the printed command finishes the run
    resume = shlex.split(err.split("Continue it with:\n", 1)[1].splitlines()[0])
    assert resume[:3] == ["python", "-m", "harness"], err
    again = run_cli(*resume[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert set(statuses(db)) == {"FINISHED"} and len(statuses(db)) == 3


def test_a_reproduction_on_a_full_disk_says_so_once_and_claims_only_what_was_written(small_disk, tmp_path):
    """The recorded run on a disk with room; its reproduction into the full one: the same one line for the
    full disk as `run`, no traceback, no verdict, no file claimed that is not there, and the command that
    gives a verdict once there is space."""
    suite = write_suite(tmp_path / "fd.yaml", SUITE)
    recorded = run_cli("run", suite, "--device", "cpu", "--out", tmp_path / "results", "--no-tracking",
                       cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    (run_dir,) = (tmp_path / "results" / "fd").iterdir()
    fill(small_disk, 200)
    p = run_cli("reproduce", run_dir, "--no-tracking", "--out", small_disk, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    err = p.stderr
    assert "Traceback" not in err and len(err.splitlines()) < 25, err
    assert "error: the reproduction stopped: the disk is full (No space left on device)" in err, err
    assert "verdict:" not in p.stdout and "no verdict" in err, err
    (partial,) = (small_disk / "fd").iterdir()
    claimed = re.search(r"finished rows are in \S+ \(([a-z, ]+)[;)]", err)
    for name in (claimed.group(1).split(", ") if claimed else []):
        assert {"results": "results.parquet", "steps": "steps.csv", "report": "report.md"}[name] in \
            {f.name for f in partial.iterdir()}, err
    if not claimed:
        assert "finished rows could not be written into" in err and not (partial / "results.parquet").exists()
    assert f"run `python -m harness reproduce {run_dir}` again for one" in err
