"""The Slurm launcher: each shard one Slurm job, submitted with submitit (`pip install 'harness[slurm]'`).

A shard's job runs `shardproc.run_logged(job.argv, ...)` under submitit: the shard is a process of
its own, its output goes to job.log, submitit's own files to the launch's submitit folder. The
resources: `--gpus-per-shard` -> gpus_per_node, `--partition` -> partition, `--time-min` -> time
(without it the partition's default time limit), one task on one node, `cpus_per_task` (option;
default the site's, `4 x gpus` with GPUs).

The handle is the Slurm job id. The state comes from `scontrol show job` (works without an
accounting daemon, as long as Slurm remembers the job: MinJobAge, 300 s by default), then
`sacct` (clusters with accounting), then submitit's result file in the folder (success or error).
submitit's own state lookup is sacct only, which fails on clusters without slurmdbd.

With the environment variable HARNESS_SUBMITIT_EXECUTOR=local (or `executor="local"`) the same
launcher uses submitit's local executor instead: the shards run as local processes through
submitit's machinery, no Slurm needed; the handle is then the controller's process id. Tests use it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
from pathlib import Path

from harness.core.errors import UserError
from harness.scale.launchers.base import Launcher, ShardJob
from harness.scale.launchers.shardproc import run_logged

EXECUTORS = ("slurm", "local")
ENV_EXECUTOR = "HARNESS_SUBMITIT_EXECUTOR"
# scontrol/sacct job states -> the launcher's
SLURM_STATES = {
    "PENDING": "pending", "CONFIGURING": "pending", "REQUEUED": "pending", "REQUEUE_HOLD": "pending",
    "REQUEUE_FED": "pending", "RESV_DEL_HOLD": "pending",
    "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running", "STOPPED": "running",
    "SIGNALING": "running", "STAGE_OUT": "running", "RESIZING": "running",
    "COMPLETED": "done",
    "FAILED": "failed", "TIMEOUT": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed", "DEADLINE": "failed", "SPECIAL_EXIT": "failed",
    "CANCELLED": "cancelled", "PREEMPTED": "cancelled", "REVOKED": "cancelled",
}
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills a job after timeout_min (default 5)


class SlurmLauncher(Launcher):
    name = "slurm"

    def __init__(self, folder: Path | str | None = None, executor: str | None = None,
                 cpus_per_task: int | None = None) -> None:
        self.executor = executor or os.environ.get(ENV_EXECUTOR) or "slurm"
        if self.executor not in EXECUTORS:
            raise UserError(f"{ENV_EXECUTOR}={self.executor!r}: valid are {', '.join(EXECUTORS)} "
                            "(slurm: sbatch; local: submitit's local executor, no cluster)")
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UserError("--launcher slurm needs submitit: pip install 'harness[slurm]'") from None
        if self.executor == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise UserError("--launcher slurm: no `sbatch`/`srun` on PATH: run launch on a Slurm login node "
                            f"(or set {ENV_EXECUTOR}=local to try the launch with submitit's local executor)")
        self.folder = Path(folder) if folder else None
        self.cpus_per_task = cpus_per_task
        self._jobs: dict[str, object] = {}       # handle -> submitit Job, for jobs submitted here
        self._folders: dict[str, Path] = {}
        self._cancelled: set[str] = set()

    # ---- submit ------------------------------------------------------------------------------
    def _executor(self, job: ShardJob):
        import submitit

        folder = self.folder or job.log.parent / "submitit"
        cpus = self.cpus_per_task or (4 * job.gpus if job.gpus else None)
        if self.executor == "local":
            ex = submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=job.time_min or LOCAL_TIMEOUT_MIN, gpus_per_node=job.gpus or 0,
                                 cpus_per_task=cpus or 1)
            return ex, folder
        ex = submitit.SlurmExecutor(folder=folder)
        # time=None leaves --time out of the batch script: the partition's default limit applies
        ex.update_parameters(job_name=f"harness-shard-{job.index}of{job.count}", nodes=1, ntasks_per_node=1,
                             partition=job.partition, time=job.time_min, cpus_per_task=cpus,
                             gpus_per_node=job.gpus or None, stderr_to_stdout=True)
        return ex, folder

    def check(self, job: ShardJob) -> None:
        """Whether Slurm would take the job (partition, time limit, GPUs), without submitting it
        (`sbatch --test-only`): for `launch` to call before it creates anything. UserError if not."""
        if self.executor != "slurm":
            return
        flags = [f"--{k}={v}" for k, v in (("partition", job.partition), ("time", job.time_min),
                                           ("gpus-per-node", job.gpus or None)) if v is not None]
        done = subprocess.run(["sbatch", "--test-only", "--nodes=1", "--ntasks=1", *flags, "--wrap=true"],
                              capture_output=True, text=True, timeout=60)
        # "Requested node configuration is not available" is also what --test-only says while the
        # partition's nodes are drained or down, where a real submission waits: left to submit(),
        # which sbatch refuses only when the request can never run (e.g. more GPUs than a node has)
        if done.returncode != 0 and "node configuration is not available" not in done.stderr:
            raise UserError(_refused(job, done.stderr))

    def submit(self, job: ShardJob) -> str:
        import submitit

        job.log.parent.mkdir(parents=True, exist_ok=True)
        job.log.touch()  # there even if the job is cancelled before the shard starts
        ex, folder = self._executor(job)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal too
                sub = ex.submit(run_logged, [str(a) for a in job.argv], str(job.cwd), dict(job.env), str(job.log))
        except submitit.core.utils.FailedJobError as e:  # sbatch refused: a bad partition, time, gpus
            raise UserError(_refused(job, str(e))) from None
        handle = str(sub.job_id)
        self._jobs[handle] = sub
        self._folders[handle] = folder
        return handle

    # ---- state -------------------------------------------------------------------------------
    def state(self, handle: str) -> str:
        if self.executor == "local":
            return self._local_state(handle)
        state = _scontrol_state(handle) or _sacct_state(handle)
        if state:
            base = state.split()[0].rstrip("+")
            return SLURM_STATES.get(base, "unknown")
        return self._result_state(handle) or "unknown"

    def _result_state(self, handle: str) -> str | None:
        """From submitit's result file: written by the job when the shard's command returned."""
        import submitit

        folder = self._folders.get(handle, self.folder)
        if folder is None:
            return None
        pickle = submitit.core.utils.JobPaths(folder, handle, 0).result_pickle
        if not pickle.exists():
            return None
        try:
            outcome, _ = submitit.core.utils.pickle_load(pickle)
        except Exception:  # noqa: BLE001 - a half-written file: the job is still ending
            return None
        return "done" if outcome == "success" else "cancelled" if handle in self._cancelled else "failed"

    def _local_state(self, handle: str) -> str:
        sub = self._jobs.get(handle)
        process = getattr(sub, "_process", None)
        if process is not None:
            if process.poll() is None:
                return "running"
            return self._result_state(handle) or ("cancelled" if handle in self._cancelled else "failed")
        # not submitted by this launcher: the result file, else whether the controller lives
        found = self._result_state(handle)
        if found:
            return found
        return "running" if _is_submitit_controller(handle) else "unknown"

    # ---- cancel ------------------------------------------------------------------------------
    def cancel(self, handle: str) -> None:
        self._cancelled.add(handle)
        if self.executor == "slurm":
            subprocess.run(["scancel", handle], capture_output=True, text=True, timeout=60)
            return
        # SIGTERM to the controller: it passes it to its task, which passes it to the shard, which
        # stops cleanly; then all return (submitit's own cancel, SIGINT, prints a traceback)
        if _is_submitit_controller(handle):
            os.kill(int(handle), signal.SIGTERM)

    def close(self) -> None:
        self._jobs.clear()


def _refused(job: ShardJob, stderr: str) -> str:
    """The message for a job sbatch refused: what was asked, and sbatch's own reasons."""
    asked = [f"--{flag} {value}" for flag, value in (("partition", job.partition), ("time-min", job.time_min),
                                                     ("gpus-per-shard", job.gpus)) if value]
    lines = [ln.strip() for ln in stderr.splitlines() if "sbatch: error" in ln]
    reason = "; ".join(lines) or (stderr.strip().splitlines() or ["(no message)"])[-1]
    return (f"--launcher slurm: sbatch refused shard {job.index}/{job.count}"
            f"{' (' + ', '.join(asked) + ')' if asked else ''}: {reason}")


def _scontrol_state(job_id: str) -> str | None:
    """JobState from `scontrol show job` (None once Slurm has forgotten the job)."""
    try:
        done = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    for token in done.stdout.split():
        if token.startswith("JobState="):
            return token.split("=", 1)[1]
    return None


def _sacct_state(job_id: str) -> str | None:
    """State from the accounting database, where the cluster has one (fails without slurmdbd)."""
    if shutil.which("sacct") is None:
        return None
    try:
        done = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=State",
                               f"--jobs={job_id}"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else None


def _is_submitit_controller(pid: str) -> bool:
    """Whether `pid` is a live submitit local controller (and not a reused process id)."""
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit.local._local" in cmdline
