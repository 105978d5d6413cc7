"""The harness on a real single-node Slurm (tests/slurm_cluster.py: Debian's slurmctld, slurmd and
munge, started by the fixture as root), on a tiny LeNet suite of two experiments:

- `launch --launcher slurm --shards 2`: two Slurm jobs, merged rows equal a sequential run's;
- an `sbatch --array=0-1` job running `run --shard auto` (SLURM_ARRAY_TASK_ID/COUNT): the two shard
  runs hold each experiment once, with the sequential run's numbers;
- an `sbatch` job running `srun torchrun --nproc_per_node=2 --standalone -m harness run`: one
  data-parallel run (one run directory, world_size 2).

Compared are the columns that do not depend on timing or the machine's load: the losses,
accuracies and the weights' fingerprint are exact on CPU with a fixed seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli, write_suite

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


def test_launch_two_shards_on_slurm_merges_the_sequential_rows(slurm_cluster, suite, sequential, tmp_path):
    if "launch" not in run_cli("--help").stdout:
        pytest.skip("needs the `launch` command (harness/scale, branch i13-shard)")
    out = tmp_path / "out"
    done = run_cli("launch", suite, "--launcher", "slurm", "--shards", "2", "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    # the shards went through Slurm: two batch jobs, named by submitit's parameters, completed
    jobs = slurm_cluster.cmd("scontrol", "--oneliner", "show", "job").stdout.splitlines()
    shard_jobs = [j for j in jobs if "JobName=harness-shard-" in j and "of2 " in j]
    assert len(shard_jobs) >= 2 and all("JobState=COMPLETED" in j for j in shard_jobs[-2:]), shard_jobs
    merged = [f for f in results(out).values() if set(f.experiment) == {"lenet_a", "lenet_b"}]
    assert merged, f"no results.csv under {out} has both experiments"
    assert compared(merged[-1]).equals(sequential)


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
    import pandas as pd

    assert compared(pd.concat(shards)).equals(sequential)


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
