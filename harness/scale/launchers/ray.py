"""The Ray launcher: each shard one Ray task that runs the shard's command as a subprocess
(`pip install 'harness[ray]'`).

One process per shard: the task only starts `harness run --shard i/N` and waits for it, so no
torch state is shared between shards even though Ray reuses its workers. The task's function is
shipped to the workers by value (it is stdlib only: shardproc.run_logged), so a remote cluster's
workers need python and the harness for the command itself, nothing else.

Where: $RAY_ADDRESS (or the `address` option) names a running cluster (`ray start --head` on one
machine, `ray start --address ...` on the others); without it a local cluster is started on this
machine with `num_cpus` CPUs (default: all) and stopped by close(). A shard asks for
`cpus_per_shard` CPUs (default: the cluster's CPUs shared out among the shards, at least 1) and
`--gpus-per-shard` GPUs; Ray sets OMP_NUM_THREADS to the shard's CPUs, so torch uses that many threads.

The handle is the task's ObjectRef in hex, known only to the launcher that submitted it: the
tasks belong to the process that runs `launch` (Ray ends a driver's tasks with it), so after it
is gone a handle's state is "unknown" and `launch --resume` decides from the run directories.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from harness.core.errors import UserError
from harness.scale.launchers import shardproc
from harness.scale.launchers.base import Launcher, ShardJob

CLOSE_GRACE_S = 60  # close() gives cancelled shards this long to write their checkpoints


class RayLauncher(Launcher):
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_shard: int | None = None,
                 object_store_mb: int = 256) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--launcher ray needs ray: pip install 'harness[ray]'") from None
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.cpus_per_shard = cpus_per_shard
        self.object_store_mb = object_store_mb
        self._refs: dict[str, object] = {}
        self._logs: dict[str, Path] = {}
        self._cancelled: set[str] = set()
        self._started = False
        self._task = None

    def _connect(self):
        import ray

        if self._task is not None:
            return self._task
        if not ray.is_initialized():
            quiet = dict(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
            try:
                if self.address:
                    ray.init(address=self.address, **quiet)
                else:
                    ray.init(num_cpus=self.num_cpus, object_store_memory=self.object_store_mb * 2**20, **quiet)
            except ConnectionError as e:
                raise UserError(f"--launcher ray: cannot reach the Ray cluster at {self.address} "
                                f"($RAY_ADDRESS): {e}") from None
            self._started = True
        ray.cloudpickle.register_pickle_by_value(shardproc)
        self._task = ray.remote(shardproc.run_logged)
        return self._task

    def check(self, job: ShardJob) -> None:
        """The cluster (reached or started now) has the GPUs a shard asks for: `launch` asks before
        it creates anything."""
        import ray

        self._connect()
        gpus = ray.cluster_resources().get("GPU", 0)
        if job.gpus > gpus:
            raise UserError(f"--gpus-per-shard {job.gpus}: the Ray cluster has {gpus:g} GPUs")

    def submit(self, job: ShardJob) -> str:
        import ray

        task = self._connect()
        self.check(job)
        resources = ray.cluster_resources()
        cpus = self.cpus_per_shard or max(1, int(resources.get("CPU", 1) // job.count))
        job.log.parent.mkdir(parents=True, exist_ok=True)
        job.log.unlink(missing_ok=True)  # it appears when the task starts: pending until then
        ref = task.options(num_cpus=cpus, num_gpus=job.gpus, max_retries=0,
                           name=f"harness-shard-{job.index}of{job.count}").remote(
            [str(a) for a in job.argv], str(job.cwd), dict(job.env), str(job.log))
        handle = ref.hex()
        self._refs[handle] = ref
        self._logs[handle] = job.log
        return handle

    def state(self, handle: str) -> str:
        import ray

        ref = self._refs.get(handle)
        if ref is None:
            return "unknown"
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return "running" if self._logs[handle].exists() else "pending"
        try:
            ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return "cancelled"
        except ray.exceptions.RayError:
            return "cancelled" if handle in self._cancelled else "failed"
        return "done"

    def cancel(self, handle: str) -> None:
        import ray

        ref = self._refs.get(handle)
        if ref is None:
            return
        self._cancelled.add(handle)
        # not force: the task sees KeyboardInterrupt and sends the shard SIGTERM (it checkpoints)
        ray.cancel(ref, force=False)

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        running = [h for h in self._refs if self.state(h) in ("pending", "running")]
        for handle in running:
            self.cancel(handle)
        if running:
            ray.wait([self._refs[h] for h in running], num_returns=len(running), timeout=CLOSE_GRACE_S)
        self._refs.clear()
        if self._started:
            ray.shutdown()
            self._started = False
        self._task = None
