"""Launchers: where `launch` runs a suite's shards (local subprocesses, Slurm via submitit, Ray).

The interface is in base.py; get_launcher imports a launcher's module only when it is asked for,
so `--help` and the other launchers never import submitit or ray.
"""

from harness.scale.launchers.base import Launcher, ShardJob, get_launcher

__all__ = ["Launcher", "ShardJob", "get_launcher"]
