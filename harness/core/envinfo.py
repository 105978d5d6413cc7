"""What this machine is: python, torch, CUDA, cuDNN, GPU and driver (NVML), CPU, threads, git.

Captured once per invocation into env.json and MLflow tags; `python -m harness env` prints it.
Every probe degrades to None rather than failing: a missing GPU or git is a fact, not an error.
"""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import harness


def collect() -> dict:
    import torch

    info = {
        "harness_version": harness.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu_name": None,
        "gpu_count": 0,
        "gpu_driver": None,
        "gpu_memory_gib": None,
        **_packages(),
        **git_info(Path(harness.__file__).resolve().parent),
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_name=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_capability=f"{props.major}.{props.minor}")
        info["gpu_driver"] = _nvml_driver()
    return info


def device_name(device: str) -> str:
    """The human name of the device rows were measured on."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return _cpu_model() or platform.processor() or "cpu"


def git_info(where: Path) -> dict:
    """Commit and dirty flag of the checkout `where` lives in (None outside a git checkout).

    A copy without .git (a GPU node sent the working tree only) takes the commit from
    $HARNESS_GIT_COMMIT when set; its dirty flag is then $HARNESS_GIT_DIRTY (0 or 1), else
    unknown (None)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None and os.environ.get("HARNESS_GIT_COMMIT"):
        dirty = {"0": False, "1": True}.get(os.environ.get("HARNESS_GIT_DIRTY", ""))
        return {"git_commit": os.environ["HARNESS_GIT_COMMIT"], "git_dirty": dirty, "git_describe": None}
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status),
            "git_describe": git("describe", "--always", "--dirty") if commit else None}


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (Linux), which
    taskset, a cpuset cgroup or a batch scheduler's binding shrinks while os.cpu_count() still
    counts the whole machine; else os.cpu_count()."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def host_memory_bytes() -> int:
    """This machine's physical memory (RAM), what load-time memory checks compare with: a fixed
    number, unlike free memory, so the same suite passes or fails the same way on one machine."""
    import psutil

    return psutil.virtual_memory().total


def gib(n: float) -> str:
    """Bytes as a short human number: '3.2 GiB', '1.5 TiB', '12 MiB'."""
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 2**20:,.0f} MiB"


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML absent or unusable: the driver is simply unknown
        return None


def _packages() -> dict:
    from importlib import metadata

    versions = {}
    for name in ("numpy", "pandas", "mlflow", "pydantic"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


if __name__ == "__main__":  # pragma: no cover - debugging aid
    import json

    json.dump(collect(), sys.stdout, indent=2)
