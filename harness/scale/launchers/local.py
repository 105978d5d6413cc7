"""The local launcher: each shard a subprocess of this machine, in its own session.

The handle is `<pid>:<start time>` (the start time from /proc, where there is one, so that a pid
reused by another process after a restart is not mistaken for the shard). The launcher that
started a shard knows its exit status; another one (`launch --resume` after the launching process
died) can only see whether the process still runs, and answers "unknown" once it has ended (launch
then reads the shard's run directory).

The CPUs are shared: unless OMP_NUM_THREADS is set already, each of the job's `count` shards gets
OMP_NUM_THREADS = max(1, CPUs // count), so that N shards do not each start one thread per CPU
(the `threads` results column records what torch used). CPUs are those this process may run on
(its affinity mask: taskset, a cpuset or a batch job's binding), not the whole machine's. The launcher's options (GPUs, partition,
time limit) mean nothing here and are ignored.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from harness.core import envinfo
from harness.scale.launchers.base import Launcher, ShardJob


def shard_threads(count: int) -> str:
    """The OMP_NUM_THREADS a local shard of a `count`-shard launch gets (what `launch --resume` checks
    a shard's run against): this process's where set, else the CPUs shared out."""
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, envinfo.usable_cpus() // count))


class LocalLauncher(Launcher):
    name = "local"

    def __init__(self, **_ignored):
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()

    def submit(self, job: ShardJob) -> str:
        env = os.environ | job.env
        env.setdefault("OMP_NUM_THREADS", shard_threads(job.count))
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with open(job.log, "ab") as log:
            proc = subprocess.Popen(job.argv, cwd=job.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        handle = f"{proc.pid}:{_start_time(proc.pid)}"
        self._procs[handle] = proc
        return handle

    def state(self, handle: str) -> str:
        proc = self._procs.get(handle)
        if proc is None:  # started by another launcher (process): alive or not is all we can know
            return "running" if _alive(handle) else "unknown"
        code = proc.poll()
        if code is None:
            return "running"
        if handle in self._cancelled:
            return "cancelled"
        return "done" if code == 0 else "failed"

    def exit_code(self, handle: str) -> int | None:
        proc = self._procs.get(handle)
        return None if proc is None else proc.poll()

    def cancel(self, handle: str) -> None:
        """SIGTERM to the shard's process group: `run` writes what finished and exits 143."""
        self._cancelled.add(handle)
        pid = int(handle.split(":")[0])
        if handle in self._procs and self._procs[handle].poll() is not None:
            return
        if handle not in self._procs and not _alive(handle):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        for proc in self._procs.values():  # reap what ended; running shards are cancel's business
            proc.poll()


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), "" elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(handle: str) -> bool:
    pid_text, _, started = handle.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process: not our shard
        return False
    return _start_time(pid) == started  # a reused pid has another start time
