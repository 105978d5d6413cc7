"""Running one shard's command where a launcher put it (a Slurm job, a Ray task), logging to a file.

The shard is its own process (no torch state is shared between shards). Signals that end or warn
the job (SIGTERM from scancel or a time limit, SIGINT, SIGUSR2 from submitit's time-limit
warning) are passed on to the shard as SIGTERM, which `harness run` treats like Ctrl-C: it writes
what finished and its checkpoint, so `launch --resume` can go on. Stdlib only: it runs inside
the job, and Ray ships it to its workers by value.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


def run_logged(argv: list[str], cwd: str, env: dict[str, str], log: str, grace_s: float = 60) -> int:
    """Run `argv` with stdout and stderr appended to `log`; its exit code. Raises if it failed."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def forward(signum, frame):  # noqa: ARG001
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

        old = {}
        if threading.current_thread() is threading.main_thread():
            old = {sig: signal.signal(sig, forward) for sig in FORWARDED}
        try:
            while proc.poll() is None:  # polled, so an interrupt (Ray's cancel) is seen at once
                time.sleep(0.2)
        finally:
            if proc.poll() is None:  # interrupted here: the shard stops too, cleanly if it can
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for sig, handler in old.items():
                signal.signal(sig, handler)
    if proc.returncode != 0:
        raise RuntimeError(f"shard command exited with code {proc.returncode}; its log: {log}")
    return proc.returncode
