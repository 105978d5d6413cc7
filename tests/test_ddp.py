"""Data-parallel training under the real torchrun, on CPU with gloo (2 processes): bitwise repeatable
at a fixed world size; world 1 against world 2 within the stated tolerance; only rank 0 writes (run
directory, MLflow); what cannot run data-parallel exits 2; an interrupted run resumes under torchrun
to the same fingerprint; a task failing on one process ends the run on both at once, rank 0 recording
it, and one failing alike on both is a failed row as in one process. NCCL (CUDA) runs the
same code with another backend; it is not exercised here (no GPU in CI)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO, run_cli, write_suite, store_copy

from harness.run import results

pytestmark = pytest.mark.slow  # each torchrun start costs seconds; CI's plain `pytest` still runs them

# The contract across world sizes (docs/architecture.md, "Data-parallel runs"): the same maths, summed
# in another order. Measured on this suite (2 epochs, 18 steps; float32): weights and losses of world 1
# and world 2 differ by at most ~4e-7 relative; the tolerance is 25 times that.
REL_TOL = 1e-5

SUITE = """
    suite: ddp
    # 513 = 8 x 64 + 1: the last batch (1 example) leaves rank 1 an empty part; 255 validation images
    # split 128 / 127
    defaults: {batch_size: 64, epochs: 2, seed: 0, dataset: fashion_mnist_sample, train_limit: 513, val_limit: 255}
    experiments:
      - {name: lenet, kind: train, model: lenet, lr: 0.9}
"""


def torchrun_command(*args) -> tuple[list[str], dict]:
    """`torchrun --standalone --nproc_per_node=2 -m harness ARGS` and its environment: the harness
    imported from this checkout."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "harness", *map(str, args)], env


def torchrun(*args, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd, env = torchrun_command(*args)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def files_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _migrated_store):
    """The suite twice under torchrun with 2 processes (one tracked in MLflow, one not) and once
    in a plain run; each in a directory of its own (also its working directory)."""
    tmp = tmp_path_factory.mktemp("ddp")
    suite = write_suite(tmp / "ddp.yaml", SUITE)
    uri = store_copy(_migrated_store, tmp / "mlflow.db")
    out = {"uri": uri}
    for name, launch, extra in (("w2_tracked", torchrun, ["--tracking-uri", uri]),
                                ("w2", torchrun, ["--no-tracking"]),
                                ("w1", run_cli, ["--no-tracking"])):
        (tmp / name).mkdir()
        proc = launch("run", suite, "--device", "cpu", "--out", tmp / name / "out", "--keep-checkpoints", *extra,
                      cwd=tmp / name)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (run_dir,) = (tmp / name / "out" / "ddp").iterdir()
        out[name] = {"proc": proc, "dir": run_dir, "cwd": tmp / name, "row": results.load(run_dir).iloc[0]}
    return out


def test_two_runs_at_world_size_2_are_bitwise_equal(runs):
    a, b = runs["w2_tracked"]["row"], runs["w2"]["row"]
    assert a.status == "ok" and b.status == "ok"
    assert a.fingerprint == b.fingerprint
    assert (a.world_size, a.backend, a.batch_size, a.per_rank_batch) == (2, "gloo", 64, 32)
    w1 = runs["w1"]["row"]
    assert (w1.world_size, w1.per_rank_batch) == (1, 64) and pd.isna(w1.backend)


def test_world_1_and_world_2_agree_within_the_tolerance(runs):
    import torch

    one, two = runs["w1"], runs["w2"]
    assert one["row"].fingerprint != two["row"].fingerprint  # another summation order: not bitwise
    for col in ("train_loss", "val_loss"):
        assert one["row"][col] == pytest.approx(two["row"][col], rel=REL_TOL), col
    for col in ("train_acc", "val_acc"):  # counts: one example may tip over at most
        assert abs(one["row"][col] - two["row"][col]) <= 1 / 255, col
    steps = [pd.read_csv(r["dir"] / "steps.csv").set_index(["metric", "step"]).value for r in (one, two)]
    assert steps[0].index.equals(steps[1].index)
    for metric in ("train_loss", "val_loss"):  # every epoch
        assert steps[0][metric].to_numpy() == pytest.approx(steps[1][metric].to_numpy(), rel=REL_TOL), metric
    # the sampled batch losses, global batches in both (before: rank 0's half, 3% off): a window's mean is a
    # difference of float32 running sums (~1,200 here, rounding ~1e-4) over its images, one in the last window
    batch = "train_loss_batch"
    assert steps[0][batch].to_numpy() == pytest.approx(steps[1][batch].to_numpy(), rel=REL_TOL, abs=2.5e-4)
    w1, w2 = (torch.load(r["dir"] / "checkpoints" / "lenet" / "last.pt", weights_only=True)["model"]
              for r in (one, two))
    assert w1.keys() == w2.keys()
    for k in w1:
        scale = w1[k].abs().max().item()
        assert (w1[k] - w2[k]).abs().max().item() <= REL_TOL * scale, k


def test_only_rank_0_writes_prints_and_tracks(runs):
    from mlflow.tracking import MlflowClient

    for name in ("w2_tracked", "w2"):
        run = runs[name]
        written = [f for f in files_under(run["cwd"]) if not f.startswith("out/mlartifacts/")]  # MLflow's, rank 0's
        assert written == sorted(str(p.relative_to(run["cwd"])) for p in run["dir"].rglob("*") if p.is_file())
        assert run["proc"].stderr.count("lenet epoch 2/2") == 1  # rank 0's lines only
        assert run["proc"].stdout.count("1 rows, 0 failed") == 1
    assert "checkpoints/lenet/last.pt" in files_under(runs["w2"]["dir"])
    client = MlflowClient(runs["uri"])
    found = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(found) == 2 and {r.info.status for r in found} == {"FINISHED"}  # one parent, one child
    child = client.get_run(runs["w2_tracked"]["row"].mlflow_run_id)
    tags = child.data.tags
    assert tags["determinism.backend"] == "gloo" and tags["determinism.world_size"] == "2"
    assert "ring" in tags["determinism.gloo_reduction"]


def test_reproduce_under_torchrun_repeats_a_data_parallel_run_bitwise(runs, tmp_path):
    recorded = runs["w2"]["dir"]
    proc = torchrun("reproduce", recorded, "--device", "cpu", "--no-tracking", "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(f"bitwise identical: fingerprint {runs['w2']['row'].fingerprint}") == 1  # rank 0 says it
    assert "data-parallel process" not in proc.stderr and "Traceback" not in proc.stderr
    (new,) = (tmp_path / "out" / "ddp").iterdir()
    assert results.load(new).iloc[0].world_size == 2
    # in one process: not bitwise (another summation order), and the warning says how to repeat it exactly
    plain = run_cli("reproduce", recorded, "--device", "cpu", "--no-tracking", "--out", tmp_path / "one", cwd=tmp_path)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert "made by 2 data-parallel process(es), this reproduce runs 1" in plain.stderr
    assert f"torchrun --standalone --nproc_per_node=2 -m harness reproduce {recorded}" in plain.stderr
    assert "equal within tolerance" in plain.stdout and "processes (world size): 2 -> 1" in plain.stdout


def test_what_cannot_run_data_parallel_exits_2(tmp_path):
    """Found by every process before the process group starts; torchrun itself then exits 1."""
    write_suite(tmp_path / "bad.yaml", """
        suite: bad
        experiments:
          - {name: corr, kind: kernel, kernel: corr2d, variants: [vectorized], sizes: {input: [[8, 8]], kernel: [[3, 3]]}}
          - {name: odd, kind: train, model: lenet, batch_size: 63, dataset: fashion_mnist_sample}
          - {name: sync, kind: train, model: resnet18, resize: [32, 32], sync_batchnorm: true,
             dataset: fashion_mnist_sample}
    """)
    proc = torchrun("run", "bad.yaml", "--device", "cpu", "--no-tracking", "--out", tmp_path / "out", cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # torchrun's report: the first process to end exited 2; torchrun then ends the other (SIGTERM) unless
    # it got there first (exit 2 too)
    root_cause = text.split("Root Cause")[1]
    assert re.search(r"exitcode\s*:\s*2\b", root_cause), text
    assert set(re.findall(r"exitcode\s*:\s*(-?\d+)", text)) <= {"2", "-15"}, text
    assert "bad.yaml: corr: a kernel experiment under torchrun (world size 2): time kernels on one device" in text
    assert "bad.yaml: odd: batch_size 63 does not split among 2 processes" in text and "e.g. 62 or 64" in text
    assert "bad.yaml: sync: sync_batchnorm needs CUDA" in text
    assert text.count("Traceback") == 1 and "ChildFailedError" in text  # torchrun's own, none of the harness
    assert not (tmp_path / "out").exists()
    assert files_under(tmp_path) == ["bad.yaml"]


def test_an_interrupted_run_resumes_under_torchrun_to_the_same_fingerprint(tmp_path):
    """SIGTERM to torchrun once epoch 1 of 3 is done: rank 0 writes what finished and the
    checkpoint; both processes of the resumed run load it and end bitwise where an uninterrupted
    run ends."""
    suite = write_suite(tmp_path / "res.yaml", SUITE.replace("epochs: 2", "epochs: 3").replace("513", "2000")
                        .replace("suite: ddp", "suite: res"))
    args = ["run", suite, "--device", "cpu", "--no-tracking"]
    whole = torchrun(*args, "--out", tmp_path / "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    cmd, env = torchrun_command(*args, "--out", tmp_path / "cut")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "lenet epoch 1/3" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) != 0
    assert "Continue it with:\n  torchrun --nproc_per_node=2 -m harness run" in rest
    (run_dir,) = (tmp_path / "cut" / "res").iterdir()
    assert (run_dir / "checkpoints" / "lenet" / "last.pt").is_file()
    resumed = torchrun(*args, "--out", tmp_path / "cut", "--resume", run_dir, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("lenet: resumed after epoch 1") == 1  # rank 0 says so; rank 1 loaded it quietly
    (done,) = (tmp_path / "whole" / "res").iterdir()
    assert results.load(run_dir).fingerprint.tolist() == results.load(done).fingerprint.tolist()


FAULT_PLUGIN = '''
"""Test-only: LeNet whose forward raises at its 5th training step on one process (RANK == FAULT_RANK), or
on every one (FAULT_RANK=all)."""
import os

from torch import nn

from harness.models import MODELS, register_model


class Faulty(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if os.environ["FAULT_RANK"] in (os.environ["RANK"], "all") and self.calls == 5:
                raise RuntimeError(f"injected fault at step {self.calls}")
        return self.inner(x)


@register_model
def lenet_fault(num_classes: int = 10):
    return Faulty(MODELS.get("lenet")(num_classes=num_classes))
'''


def run_faulty(tmp_path, store, fault_rank: str):
    """Two experiments under torchrun, tracked in a real SQLite store: `first` (lenet_fault, raising
    on process FAULT_RANK), then `second`. -> (the finished torchrun, suite path, tracking URI)."""
    (tmp_path / "fault_plugin.py").write_text(FAULT_PLUGIN)
    suite = write_suite(tmp_path / "fault.yaml", SUITE.replace("suite: ddp", "suite: fault").replace(
        "- {name: lenet, kind: train, model: lenet, lr: 0.9}",
        "- {name: first, kind: train, model: lenet_fault, lr: 0.9}\n"
        "      - {name: second, kind: train, model: lenet, lr: 0.9}"))
    uri = store_copy(store, tmp_path / "mlflow.db")
    cmd, env = torchrun_command("run", suite, "--device", "cpu", "--out", tmp_path / "out", "--tracking-uri", uri)
    env |= {"PYTHONPATH": os.pathsep.join([str(tmp_path), env["PYTHONPATH"]]), "HARNESS_PLUGINS": "fault_plugin",
            "FAULT_RANK": fault_rank}
    # far below the process group's 10-minute collective timeout: a hang fails here (TimeoutExpired)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180), suite, uri


def mlflow_runs(uri: str, experiment: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {r.info.run_id: r for r in client.search_runs([client.get_experiment_by_name(experiment).experiment_id])}


@pytest.mark.parametrize("rank", [1, 0])
def test_a_task_failing_on_one_process_stops_the_run_and_rank_0_records_it(rank, tmp_path, _migrated_store):
    """One process raises mid-epoch while the other waits for it in the gradient all-reduce: no
    10-minute wait for the collective's timeout, no next experiment; rank 0 records the failed row
    (naming the rank and its error), ends the MLflow runs and prints how to continue."""
    proc, suite, uri = run_faulty(tmp_path, _migrated_store, str(rank))
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    root_cause = text.split("Root Cause")[1]
    assert re.search(rf"rank\s*:\s*{rank}\b.*\n.*exitcode\s*:\s*1\b", root_cause), text  # it exited 1 first
    error = f"rank {rank}: RuntimeError: injected fault at step 5"
    (run_dir,) = (tmp_path / "out" / "fault").iterdir()
    assert (f"error: a task failed in first under torchrun, so the run stopped on all 2 processes: {error} "
            f"(tracebacks: {run_dir}/errors.log)\n") in proc.stderr
    assert (f"Continue it with:\n  torchrun --nproc_per_node=2 -m harness run {suite} --resume "
            f"{run_dir} --device cpu --tracking-uri {uri}\n") in proc.stderr
    assert "first epoch 1/2" not in proc.stderr and "second epoch" not in proc.stderr
    # rank 1 prints its own traceback (it writes no errors.log); rank 0's is in errors.log only
    assert proc.stderr.count('fault_plugin.py", line') == (rank == 1), proc.stderr
    (row,) = results.load(run_dir).itertuples()  # the next experiment never started
    assert (row.experiment, row.status, row.error, row.world_size) == ("first", "failed", error, 2)
    log = (run_dir / "errors.log").read_text()
    assert log.startswith(f"--- first lenet_fault 28x28 (data-parallel: 2 processes)\nrank {rank}:\nTraceback")
    assert 'fault_plugin.py", line' in log and "RuntimeError: injected fault at step 5" in log
    found = mlflow_runs(uri, "fault")
    assert found[row.mlflow_run_id].info.status == "FAILED"
    assert sorted(r.info.status for r in found.values()) == ["FAILED", "KILLED"]  # the child; the parent (unfinished)


def test_a_task_failing_alike_on_every_process_is_a_failed_row_and_the_suite_goes_on(tmp_path, _migrated_store):
    """The same failure on every process (as a too-large model runs out of memory on every GPU): no
    process waits in a collective, so it is isolated as in one process, and the next experiment runs."""
    proc, _, uri = run_faulty(tmp_path, _migrated_store, "all")
    assert proc.returncode != 0  # a failed row: exit 1 from both processes
    assert set(re.findall(r"exitcode\s*:\s*(-?\d+)", proc.stderr)) == {"1"}, proc.stderr
    assert "2 rows, 1 failed or diverged" in proc.stdout and "under torchrun, so the run stopped" not in proc.stderr
    (run_dir,) = (tmp_path / "out" / "fault").iterdir()
    df = results.load(run_dir).set_index("experiment")
    assert df.loc["first", "status"] == "failed" and df.loc["first", "error"] == "RuntimeError: injected fault at step 5"
    assert df.loc["second", "status"] == "ok" and proc.stderr.count("second epoch 2/2") == 1
    found = mlflow_runs(uri, "fault")
    assert sorted(r.info.status for r in found.values()) == ["FAILED", "FAILED", "FINISHED"]  # parent, first; second


def test_a_resume_at_another_world_size_is_refused_with_the_command_that_matches(runs):
    """docs/scaling.md: `--resume` needs the world size the run was made with (harness.run.resume)."""
    suite = runs["w2"]["cwd"].parent / "ddp.yaml"
    w2, w1 = runs["w2"], runs["w1"]
    before = {p: p.read_bytes() for p in (w2["dir"], w1["dir"]) for p in p.rglob("*") if p.is_file()}
    r = run_cli("run", suite, "--device", "cpu", "--no-tracking", "--resume", w2["dir"], cwd=w2["cwd"])
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert f"error: --resume {w2['dir']}: that run was made under other settings: " in r.stderr
    assert "world size 2 (now 1)" in r.stderr
    assert f"torchrun --nproc_per_node=2 -m harness run {suite} --resume {w2['dir']} --device cpu" in r.stderr
    r = torchrun("run", suite, "--device", "cpu", "--no-tracking", "--resume", w1["dir"], cwd=w1["cwd"])
    assert r.returncode != 0 and re.search(r"exitcode\s*:\s*2\b", r.stderr.split("Root Cause")[1]), r.stderr
    assert r.stderr.count("Traceback") == 1 and "ChildFailedError" in r.stderr  # torchrun's own, none of the harness
    assert f"error: --resume {w1['dir']}: that run was made under other settings" in r.stderr  # the first to exit 2
    assert "world size 1 (now 2)" in r.stderr and f"python -m harness run {suite} --resume {w1['dir']}" in r.stderr
    assert {p: p.read_bytes() for p in before} == before
