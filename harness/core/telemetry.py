"""Memory and GPU sampling while an experiment runs.

A background thread samples every `interval_s`: this process's RSS (psutil) and, on CUDA, the GPU's
memory in use, utilisation and power through NVML (nvidia-ml-py). On CUDA the allocator's own peaks
(max_memory_allocated / reserved) are exact and preferred for tensors. Anything unavailable is None.

    with Sampler("cuda") as s: train(...)
    s.summary() -> {"peak_rss_bytes", "gpu_mem_used_peak_bytes", "gpu_util_mean_pct", "gpu_power_mean_w", ...}
"""
from __future__ import annotations

import threading


class Sampler:
    def __init__(self, device: str, interval_s: float = 0.05):
        self.device, self.interval_s = device, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_rss = 0
        self.gpu_mem_peak: int | None = None
        self.util: list[float] = []
        self.power_w: list[float] = []
        self._nvml = None

    def __enter__(self) -> "Sampler":
        import psutil

        self._proc = psutil.Process()
        self.peak_rss = self._proc.memory_info().rss
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
            self._nvml = _nvml_handle(torch.cuda.current_device())
        self._thread = threading.Thread(target=self._loop, name="harness-telemetry", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)
        if self._nvml is None:
            return
        import pynvml

        try:
            mem = pynvml.nvmlDeviceGetMemoryInfo(self._nvml).used
            self.gpu_mem_peak = max(self.gpu_mem_peak or 0, mem)
            self.util.append(float(pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu))
            self.power_w.append(pynvml.nvmlDeviceGetPowerUsage(self._nvml) / 1000.0)
        except pynvml.NVMLError:  # a query this GPU does not support: leave it empty
            pass

    def summary(self) -> dict:
        out = {"peak_rss_bytes": self.peak_rss, "gpu_mem_used_peak_bytes": self.gpu_mem_peak,
               "gpu_util_mean_pct": _mean(self.util), "gpu_power_mean_w": _mean(self.power_w),
               "peak_mem_bytes": self.peak_rss, "peak_mem_reserved_bytes": None}
        if self.device.startswith("cuda"):
            import torch

            out["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
            out["peak_mem_reserved_bytes"] = torch.cuda.max_memory_reserved()
        return out


def _nvml_handle(index: int):
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # no NVML (driver/library missing): sample nothing on the GPU side
        return None


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
