"""The cluster launchers' contract on real executors, with plain commands: a shard that succeeds,
one that fails, one cancelled while it runs (it gets SIGTERM and its log says so), each shard's
output in its own log and its own environment variables.

- submitit's local executor (`SlurmLauncher(executor="local")`, what HARNESS_SUBMITIT_EXECUTOR=local
  selects): default tests;
- Ray on a local cluster (`ray.init(num_cpus=2)`): slow;
- the real single-node Slurm of tests/slurm_cluster.py (root and Debian's slurm packages).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, needs_extra, require_extra

from harness.core.errors import UserError
from harness.scale.launchers import ShardJob, get_launcher

# Slurm's scancel may signal both the job's step and the process (two SIGTERMs): the first one is handled, once
TERM_AWARE = ("import signal, sys, time\n"
              "def term(*a):\n"
              "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "    print('got SIGTERM', flush=True)\n"
              "    sys.exit(143)\n"
              "signal.signal(signal.SIGTERM, term)\n"
              "print('started', flush=True)\n"
              "time.sleep(600)\n")


def shard(tmp: Path, index: int, argv: list[str], **kw) -> ShardJob:
    return ShardJob(index=index, count=3, argv=argv, cwd=tmp, log=tmp / "logs" / f"shard-{index}.log",
                    env={"SHARD_WORD": f"word{index}", "PYTHONPATH": str(REPO)}, **kw)


def wait_for(predicate, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def check_contract(launcher, tmp: Path) -> list[str]:
    jobs = [shard(tmp, 0, ["sh", "-c", "echo out $SHARD_WORD; echo err >&2"]),
            shard(tmp, 1, ["sh", "-c", "echo failing; exit 3"]),
            shard(tmp, 2, [sys.executable, "-c", TERM_AWARE])]
    handles = [launcher.submit(job) for job in jobs]
    assert all(isinstance(h, str) and h for h in handles) and len(set(handles)) == 3
    assert {launcher.state(h) for h in handles} <= {"pending", "running", "done", "failed"}
    wait_for(lambda: jobs[2].log.exists() and "started" in jobs[2].log.read_text(), what="shard 2 to start")
    assert launcher.state(handles[2]) == "running"
    launcher.cancel(handles[2])
    wait_for(lambda: all(launcher.state(h) not in ("pending", "running") for h in handles), what="all to end")
    assert [launcher.state(h) for h in handles] == ["done", "failed", "cancelled"]
    assert jobs[0].log.read_text().split() == ["out", "word0", "err"]
    assert jobs[1].log.read_text().split() == ["failing"]
    lines = jobs[2].log.read_text().splitlines()  # it could stop cleanly (a second SIGTERM, if any, ran the
    assert lines[0] == "started" and len(lines) >= 2 and set(lines[1:]) == {"got SIGTERM"}, lines  # same handler)
    return handles


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs an affinity mask of at least 2 CPUs to take one away")
def test_local_launcher_shares_the_cpus_this_process_may_use_not_the_machines(tmp_path):
    # pinned to one CPU (as taskset or a batch job's binding would), a 1-shard job gets 1 thread, not one per CPU
    code = ("import os, sys, time\n"
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "from harness.scale.launchers import ShardJob, get_launcher\n"
            "from pathlib import Path\n"
            "tmp = Path(sys.argv[1])\n"
            "job = ShardJob(index=0, count=1, argv=['sh', '-c', 'echo $OMP_NUM_THREADS'], cwd=tmp, log=tmp / 'shard.log')\n"
            "launcher = get_launcher('local')\n"
            "h = launcher.submit(job)\n"
            "while launcher.state(h) == 'running': time.sleep(0.05)\n"
            "print(launcher.state(h))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "done", p.stderr
    assert (tmp_path / "shard.log").read_text().split() == ["1"]


@needs_extra("submitit")
def test_submitit_local_executor_runs_fails_and_cancels_shards(tmp_path):
    launcher = get_launcher("slurm", executor="local")
    handles = check_contract(launcher, tmp_path)
    # a launcher started later (launch --resume) still tells done from failed, by submitit's result files
    later = get_launcher("slurm", executor="local", folder=tmp_path / "logs" / "submitit")
    assert [later.state(h) for h in handles[:2]] == ["done", "failed"]
    assert later.state("999999999") == "unknown"


def test_the_executor_is_checked_and_named_in_the_message(monkeypatch):
    monkeypatch.setenv("HARNESS_SUBMITIT_EXECUTOR", "lcoal")
    with pytest.raises(UserError, match="HARNESS_SUBMITIT_EXECUTOR='lcoal': valid are slurm, local"):
        get_launcher("slurm")


@needs_extra("submitit")
def test_slurm_without_sbatch_says_where_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    with pytest.raises(UserError, match="no `sbatch`/`srun` on PATH.*HARNESS_SUBMITIT_EXECUTOR=local"):
        get_launcher("slurm")


@needs_extra("submitit")
def test_choosing_a_launcher_imports_only_its_library():
    code = ("import sys\nfrom harness.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "from harness.scale.launchers import get_launcher\n"
            "assert not {'ray', 'submitit'} & set(sys.modules), 'help'\n"
            "get_launcher('slurm', executor='local')\n"
            "assert 'submitit' in sys.modules and 'ray' not in sys.modules, 'slurm'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name, module, extra", [("slurm", "submitit", "slurm"), ("ray", "ray", "ray")])
def test_a_launcher_whose_library_is_missing_says_which_extra_to_install(name, module, extra):
    # what a newcomer's `pip install -e ".[dev]"` gets, wherever the library is installed (None blocks the import)
    code = (f"import sys\nsys.modules[{module!r}] = None\n"
            "from harness.core.errors import UserError\nfrom harness.scale.launchers import get_launcher\n"
            f"try:\n    get_launcher({name!r})\nexcept UserError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"--launcher {name} needs {module}: pip install 'harness[{extra}]'"


@pytest.fixture(scope="module")
def ray_launcher():
    require_extra("ray")
    launcher = get_launcher("ray", num_cpus=2)
    yield launcher
    launcher.close()


@pytest.mark.slow
def test_ray_local_cluster_runs_fails_and_cancels_shards(ray_launcher, tmp_path):
    check_contract(ray_launcher, tmp_path)
    assert ray_launcher.state("ffff") == "unknown"  # a handle of another launcher (before a resume)


@pytest.mark.slow
def test_ray_refuses_gpus_the_cluster_does_not_have(ray_launcher, tmp_path):
    import ray

    ray_launcher.check(shard(tmp_path, 0, ["true"]))  # reaches (here: starts) the cluster; no GPU asked: fine
    have = ray.cluster_resources().get("GPU", 0)
    for refused in (ray_launcher.check, ray_launcher.submit):  # launch asks check before creating anything
        with pytest.raises(UserError, match=rf"--gpus-per-shard {int(have) + 1}: the Ray cluster has {have:g} GPUs"):
            refused(shard(tmp_path, 0, ["true"], gpus=int(have) + 1))


@needs_extra("submitit")
def test_real_slurm_runs_fails_and_cancels_shards(slurm_cluster, tmp_path):
    launcher = get_launcher("slurm")
    check_contract(launcher, tmp_path)
    # the state comes from scontrol: this cluster has no accounting, so sacct (submitit's way) fails
    assert subprocess.run(["sacct"], capture_output=True, env=slurm_cluster.env).returncode != 0


@needs_extra("submitit")
def test_real_slurm_refuses_a_bad_partition_with_sbatchs_reason(slurm_cluster, tmp_path, capfd):
    launcher = get_launcher("slurm")
    bad = shard(tmp_path, 0, ["true"], partition="nope")
    with pytest.raises(UserError, match="--partition nope.*invalid partition"):
        launcher.check(bad)  # before anything is created, nothing submitted
    with pytest.raises(UserError, match="--partition nope.*invalid partition"):
        launcher.submit(bad)
    assert "sbatch: error" not in capfd.readouterr().err  # said once, in the UserError
    launcher.check(shard(tmp_path, 0, ["true"], partition="debug", time_min=5))  # a good one passes
    assert slurm_cluster.cmd("squeue", "--noheader").stdout.strip() == ""


@needs_extra("submitit")
def test_real_slurm_passes_partition_and_time_limit(slurm_cluster, tmp_path):
    launcher = get_launcher("slurm")
    handle = launcher.submit(shard(tmp_path, 0, ["sleep", "60"], partition="debug", time_min=7))
    try:
        out = slurm_cluster.cmd("scontrol", "--oneliner", "show", "job", handle).stdout
        assert "Partition=debug" in out and "TimeLimit=00:07:00" in out and "NumCPUs=1" in out
    finally:
        launcher.cancel(handle)
    wait_for(lambda: launcher.state(handle) == "cancelled", what="the cancel")
