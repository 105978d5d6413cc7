"""A real single-node Slurm cluster for tests (Debian's slurmctld, slurmd, munge), started as root.

Everything lives in one temporary directory: a private munge key, munged on its own socket, a
slurm.conf for this host (2 CPUs, partition `debug`, no cgroups, no accounting), the state and
spool directories, logs and pid files. The daemons and the client commands find the config through
$SLURM_CONF, so the system's /etc/slurm and /etc/munge are left untouched. Ports are picked free,
so it does not clash with another Slurm on the machine.

Install (CI does the same):
    apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge

Use the session fixture `slurm_cluster` (register with `from slurm_cluster import slurm_cluster`):
it yields a `SlurmCluster` whose `env` has SLURM_CONF, and sets SLURM_CONF in os.environ for the
session so submitit's `sbatch`/`scancel` calls (made from this process) reach it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client"}
APT_LINE = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    partition: str = "debug"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def cmd(self, *args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout, **kw)

    def job_states(self, job_id: str) -> list[tuple[str, str]]:
        """(JobState, ExitCode) of the job, one per array task, from `scontrol show job` (there is no
        accounting daemon here: sacct is off; MinJobAge=600 keeps ended jobs that long)."""
        out = self.cmd("scontrol", "--oneliner", "show", "job", job_id).stdout
        records = [dict(tok.split("=", 1) for tok in line.split() if "=" in tok) for line in out.splitlines()]
        return [(r.get("JobState", "?"), r.get("ExitCode", "?")) for r in records if r]

    def wait_job(self, job_id: str, timeout: float = 600) -> list[tuple[str, str]]:
        """Poll until every task of the job has ended; their final (JobState, ExitCode)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.job_states(job_id)
            if states and all(s not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "?") for s, _ in states):
                return states
            time.sleep(1)
        raise AssertionError(f"Slurm job {job_id} still {states} after {timeout:.0f}s; logs in {self.root}")

    def sbatch(self, script: str, cwd: Path) -> str:
        """Submit a batch script (text); the job id."""
        done = self.cmd("sbatch", "--parsable", input=script, cwd=cwd)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _config(root: Path, node: str, ports: list[int]) -> str:
    return f"""\
ClusterName=harnesstest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def start_cluster(root: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under `root`; the caller stops them with stop_cluster."""
    node = socket.gethostname().split(".")[0]
    root.chmod(0o711)  # munged wants its socket's directory searchable, and nothing writable by others
    (root / "state").mkdir()
    (root / "spool").mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_config(root, node, _free_ports(2)))
    cluster = SlurmCluster(root, conf, node)
    subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={root}/munge.sock",
                    f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
                    f"--seed-file={root}/munged.seed"], check=True, capture_output=True, timeout=30)
    # -i: ignore (there is none) saved state; both daemonize and write their pid files
    for daemon in (["slurmctld", "-i"], ["slurmd", "-N", node]):
        done = subprocess.run(daemon, env=cluster.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{daemon[0]} did not start: {done.stderr}\n{cluster.logs()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = cluster.cmd("sinfo", "--noheader", "--format=%t", "--nodes", node).stdout.strip()
        if out == "idle":
            return cluster
        time.sleep(0.5)
    raise RuntimeError(f"the Slurm node {node} is not idle after 60 s (sinfo: {out!r})\n{cluster.logs()}")


def stop_cluster(cluster: SlurmCluster) -> None:
    cluster.cmd("scancel", "--full", "--user=root")
    for name in ("slurmd", "slurmctld", "munged"):
        _stop(cluster.root / f"{name}.pid")


def skip_reason() -> str | None:
    """Why a real Slurm cannot be started here, or None."""
    missing = [f"{cmd} (Debian package {pkg})" for cmd, pkg in DAEMONS.items() if shutil.which(cmd) is None]
    if missing:
        return f"needs {', '.join(missing)}: {APT_LINE}"
    if os.geteuid() != 0:
        return "needs root to start slurmd (it runs jobs as their users) and slurmctld as SlurmUser=root"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="harness-slurm-"))
    cluster = start_cluster(root)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(root, ignore_errors=True)
