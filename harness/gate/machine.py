"""Which machine a measurement belongs to: the device class (a baseline file's family, its file
name) and the speed fingerprint (what must be equal for stored timings to be compared)."""
from __future__ import annotations

import os
import re
from pathlib import Path

# CPU flags that decide which kernels torch, oneDNN and the BLAS dispatch to
SPEED_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
               "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def device_class(device: str) -> str:
    """The family of devices a baseline belongs to (its file name): `cpu`, or `cuda-<GPU name,
    lower case, runs of other characters as '-'>`, e.g. cuda-nvidia-h100-80gb-hbm3. Whether its
    numbers apply here is decided by `speed_fingerprint`."""
    if not device.startswith("cuda"):
        return "cpu"
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def speed_fingerprint(device: str) -> dict:
    """What changes a kernel's speed apart from its code: stored timings are compared only where
    every field is equal. CPU: vendor, model (name and family/model/stepping), the vector
    extensions torch dispatches on (its CPU capability and the CPU's flags), logical CPUs, and the
    torch version and build; CUDA adds the GPU, CUDA and cuDNN."""
    import torch

    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    fp = {"cpu_vendor": info.get("vendor_id"), "cpu_model": info.get("model name"),
          "cpu_id": "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping")),
          "cpu_capability": torch.backends.cpu.get_cpu_capability(),
          "cpu_flags": " ".join(f for f in SPEED_FLAGS if f in flags), "cpu_count": os.cpu_count(),
          "torch": torch.__version__, "torch_build": torch.version.git_version}
    if device.startswith("cuda"):
        fp |= {"gpu": torch.cuda.get_device_name(torch.device(device)), "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version()}
    return fp


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields
