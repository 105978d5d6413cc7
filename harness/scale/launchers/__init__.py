"""Launchers: how shards are started and watched (base.py: the interface and get_launcher)."""
from harness.scale.launchers.base import STATES, Launcher, ShardJob, get_launcher

__all__ = ["STATES", "Launcher", "ShardJob", "get_launcher"]
