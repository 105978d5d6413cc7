"""`launch` through the cluster launchers, and the harness inside Slurm jobs, on a tiny LeNet suite of
two experiments:

- `launch --launcher slurm --shards 2` with submitit's local executor (HARNESS_SUBMITIT_EXECUTOR=local):
  default tests, no cluster needed;
- `launch --launcher ray --shards 2` on a local Ray cluster: slow;

and on a real single-node Slurm (tests/slurm_cluster.py: Debian's slurmctld, slurmd and munge,
started by the fixture as root):

- `launch --launcher slurm --shards 2`: two Slurm jobs, merged rows equal a sequential run's; a shard
  cancelled by the scheduler is reported with its log, and `launch --resume` resubmits it alone;
- an `sbatch --array=0-1` job running `run --shard auto` (SLURM_ARRAY_TASK_ID/COUNT): the two shard
  runs hold each experiment once; `merge` makes the sequential run's table of them;
- an `sbatch` job running `srun torchrun --nproc_per_node=2 --standalone -m harness run`: one
  data-parallel run (one run directory, world_size 2).

The launches here use --no-tracking (their MLflow sync is tested with the local launcher).
Compared are the columns that do not depend on timing or the machine's load: the losses,
accuracies and the weights' fingerprint are exact on CPU with a fixed seed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, needs_extra, run_cli, write_suite

SUITE = """
suite: tiny
defaults: {batch_size: 64, epochs: 1, seed: 0, dataset: fashion_mnist_sample, train_limit: 256,
           val_limit: 256, model: lenet}
experiments:
  - {name: lenet_a, kind: train, lr: 0.1}
  - {name: lenet_b, kind: train, lr: 0.05}
"""
COMPARED = ["experiment", "status", "model", "lr", "epochs", "seed", "params", "flops", "train_loss", "train_acc",
            "val_loss", "val_acc", "best_val_acc", "fingerprint", "dataset_digest"]


def results(out: Path):
    """Every results.csv under `out`, each as a frame."""
    import pandas as pd

    return {p: pd.read_csv(p) for p in sorted(out.rglob("results.csv"))}


def compared(frame):
    return frame[COMPARED].sort_values("experiment").reset_index(drop=True)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Every run here (sequential, shards, Slurm jobs) with one torch thread: CPU results are exact
    only at the same thread count, and Ray sets OMP_NUM_THREADS to a task's CPUs (1 here)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    return write_suite(tmp_path_factory.mktemp("suite") / "tiny.yaml", SUITE)


@pytest.fixture(scope="module")
def sequential(suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    done = run_cli("run", suite, "--no-tracking", "--out", out)
    assert done.returncode == 0, done.stderr
    (frame,) = results(out).values()
    assert list(frame.status) == ["ok", "ok"]
    return compared(frame)


def job_script(*lines: str, sbatch: tuple[str, ...] = ()) -> str:
    head = ["#!/bin/bash", *(f"#SBATCH {opt}" for opt in sbatch)]
    return "\n".join([*head, f"export PYTHONPATH={REPO}", "set -e", *lines, ""])


def merged(out: Path):
    """The launch's merged table: the results.csv under `out` that holds both experiments."""
    both = [f for f in results(out).values() if set(f.experiment) == {"lenet_a", "lenet_b"}]
    assert len(both) == 1, f"{len(both)} results.csv under {out} hold both experiments"
    return compared(both[0])


def launch(*args) -> subprocess.CompletedProcess:
    done = run_cli("launch", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@needs_extra("submitit")
def test_launch_through_submitits_local_executor(suite, sequential, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_SUBMITIT_EXECUTOR", "local")
    out = tmp_path / "out"
    launch(suite, "--launcher", "slurm", "--shards", "2", "--out", out, "--no-tracking")
    assert merged(out).equals(sequential)
    # the shards went through submitit: one job each, each ended with a result file
    assert len(list(out.rglob("submitit/*_result.pkl"))) == 2


@pytest.mark.slow
@needs_extra("ray")
def test_launch_on_a_local_ray_cluster(suite, sequential, tmp_path):
    out = tmp_path / "out"
    launch(suite, "--launcher", "ray", "--shards", "2", "--out", out, "--no-tracking")
    assert merged(out).equals(sequential)


@needs_extra("submitit")
def test_launch_on_a_partition_slurm_refuses_creates_nothing(slurm_cluster, suite, tmp_path):
    out = tmp_path / "out"
    done = run_cli("launch", suite, "--launcher", "slurm", "--shards", "2", "--partition", "nope", "--out", out,
                   "--no-tracking")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --launcher slurm: sbatch refused") and "--partition nope" in done.stderr
    assert "invalid partition" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    assert slurm_cluster.cmd("squeue", "--noheader").stdout.strip() == ""


def shard_jobs(cluster, out: Path) -> dict[str, list[str]]:
    """The launch's Slurm jobs (their submitit folder is under `out`): job name -> states."""
    found: dict[str, list[str]] = {}
    for line in cluster.cmd("scontrol", "--oneliner", "show", "job").stdout.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if fields.get("StdOut", "").startswith(str(out)):
            found.setdefault(fields["JobName"], []).append(fields["JobState"])
    return found


@needs_extra("submitit")
def test_launch_two_shards_on_slurm_merges_the_sequential_rows(slurm_cluster, suite, sequential, tmp_path):
    out = tmp_path / "out"
    launch(suite, "--launcher", "slurm", "--shards", "2", "--out", out, "--no-tracking")
    assert merged(out).equals(sequential)
    assert shard_jobs(slurm_cluster, out) == {"harness-shard-0of2": ["COMPLETED"],
                                              "harness-shard-1of2": ["COMPLETED"]}


@needs_extra("submitit")
def test_a_shard_cancelled_by_slurm_is_reported_and_resume_resubmits_it_alone(slurm_cluster, suite, sequential,
                                                                             tmp_path):
    out = tmp_path / "out"
    node = ["scontrol", "update", f"NodeName={slurm_cluster.node}"]
    assert slurm_cluster.cmd(*node, "State=DRAIN", "Reason=test").returncode == 0  # the shards wait
    try:
        proc = subprocess.Popen([sys.executable, "-m", "harness", "launch", str(suite), "--launcher", "slurm",
                                 "--shards", "2", "--out", str(out), "--no-tracking"], cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while len(jobs := shard_jobs(slurm_cluster, out)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.5)
        assert jobs == {"harness-shard-0of2": ["PENDING"], "harness-shard-1of2": ["PENDING"]}
        assert slurm_cluster.cmd("scancel", "--name=harness-shard-1of2").returncode == 0
    finally:
        slurm_cluster.cmd(*node, "State=RESUME")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stdout + stderr
    assert "shard 1/2 did not finish (cancelled" in stderr and "logs/shard-1.log" in stderr, stderr
    (launch_dir,) = out.glob("tiny/*")
    assert f"launch --resume {launch_dir}" in stderr
    launch("--resume", launch_dir)
    assert shard_jobs(slurm_cluster, out) == {"harness-shard-0of2": ["COMPLETED"],
                                              "harness-shard-1of2": ["CANCELLED", "COMPLETED"]}
    assert merged(out).equals(sequential)


def test_sbatch_array_runs_one_shard_per_task(slurm_cluster, suite, sequential, tmp_path):
    out = tmp_path / "out"
    script = job_script(f"{sys.executable} -m harness run {suite} --shard auto --no-tracking --out {out}",
                        sbatch=("--array=0-1", f"--output={tmp_path}/array-%A_%a.log"))
    job = slurm_cluster.sbatch(script, cwd=tmp_path)
    states = slurm_cluster.wait_job(job)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("array-*.log")))
    assert states == [("COMPLETED", "0:0")] * 2, logs
    shards = list(results(out).values())
    assert len(shards) == 2, logs  # one run directory per array task
    assert sorted(e for f in shards for e in f.experiment) == ["lenet_a", "lenet_b"]  # each once
    # the README's next step: merge the array's shards into one table
    done = run_cli("merge", out, "--out", tmp_path / "merged")
    assert done.returncode == 0, done.stdout + done.stderr
    assert merged(tmp_path / "merged").equals(sequential)


def test_sbatch_srun_torchrun_is_one_data_parallel_run(slurm_cluster, suite, tmp_path):
    out = tmp_path / "out"
    script = job_script(f"srun {sys.executable} -m torch.distributed.run --nproc_per_node=2 --standalone "
                        f"-m harness run {suite} --no-tracking --out {out}",
                        sbatch=("--nodes=1", "--ntasks=1", "--cpus-per-task=2", f"--output={tmp_path}/ddp.log"))
    job = slurm_cluster.sbatch(script, cwd=tmp_path)
    states = slurm_cluster.wait_job(job)
    log = (tmp_path / "ddp.log").read_text()
    assert states == [("COMPLETED", "0:0")], log
    runs = results(out)
    assert len(runs) == 1, f"{len(runs)} run directories (one per rank?): {list(runs)}\n{log}"
    (frame,) = runs.values()
    assert sorted(frame.experiment) == ["lenet_a", "lenet_b"] and set(frame.status) == {"ok"}
    assert "world_size" in frame.columns and set(frame.world_size) == {2}, list(frame.columns)
