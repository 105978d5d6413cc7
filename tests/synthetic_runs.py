"""Four run directories with hand-chosen numbers, written through harness.run.results.save (so the
schema is the real one), for the report and dashboard tests.

    kernels, suite ks (corr2d, baseline loop): run KA (commit c1) and KB (commit c2)
      in=8x8 k=3x3, seeds 0 and 1        loop  KA 1.0e-3, 1.2e-3   KB 1.0e-3, 1.1e-3   (IQR 2e-5)
                                         native KA 1.0e-5, 2.0e-5  KB 5.0e-6, 5.5e-6   (IQR 1e-6)
      in=32x32 k=3x3, seed 0 only        loop  KA 1e-2 (IQR 10%)  KB 1e-2 (IQR 5%)
                                         native KA 1e-4 (IQR 10%)  KB 1.5e-4 (IQR 2e-5)
    training, suite ts: run TA (c1) and TB (c2)
      lenet seeds 0, 1    val_acc TA .80 .84  TB .81 .83; images/s TA 1000 1200  TB 2000 2400;
                          epoch s TA 2.0 2.2  TB 1.0 1.1; to target s TA 10 14  TB 5 7; peak 100 / 110 MiB
      resnet18 seed 0     val_acc TA .85  TB .86; images/s TA 300  TB 330; peak 500 MiB
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.run import results

KA, KB = "20260101T100000Z-aaaaaa", "20260102T100000Z-bbbbbb"
TA, TB = "20260101T110000Z-cccccc", "20260102T110000Z-dddddd"
COMMIT = {KA: "c1" * 20, TA: "c1" * 20, KB: "c2" * 20, TB: "c2" * 20}
MIB = 2**20

KERNEL = {  # run: [(size, input, variant, seed, time_median_s, time_iqr_s)]
    KA: [("in=8x8 k=3x3", 8, "loop", 0, 1.0e-3, 2e-5), ("in=8x8 k=3x3", 8, "native", 0, 1.0e-5, 1e-6),
         ("in=8x8 k=3x3", 8, "loop", 1, 1.2e-3, 2e-5), ("in=8x8 k=3x3", 8, "native", 1, 2.0e-5, 1e-6),
         ("in=32x32 k=3x3", 32, "loop", 0, 1e-2, 1e-3), ("in=32x32 k=3x3", 32, "native", 0, 1e-4, 1e-5)],
    KB: [("in=8x8 k=3x3", 8, "loop", 0, 1.0e-3, 2e-5), ("in=8x8 k=3x3", 8, "native", 0, 5.0e-6, 1e-6),
         ("in=8x8 k=3x3", 8, "loop", 1, 1.1e-3, 2e-5), ("in=8x8 k=3x3", 8, "native", 1, 5.5e-6, 1e-6),
         ("in=32x32 k=3x3", 32, "loop", 0, 1e-2, 5e-4), ("in=32x32 k=3x3", 32, "native", 0, 1.5e-4, 2e-5)],
}
TRAIN = {  # run: [(model, seed, val_acc, images_per_s, epoch_time_s, time_to_target_s, peak MiB)]
    TA: [("lenet", 0, 0.80, 1000, 2.0, 10, 100), ("lenet", 1, 0.84, 1200, 2.2, 14, 110),
         ("resnet18", 0, 0.85, 300, 9.0, None, 500)],
    TB: [("lenet", 0, 0.81, 2000, 1.0, 5, 100), ("lenet", 1, 0.83, 2400, 1.1, 7, 110),
         ("resnet18", 0, 0.86, 330, 8.0, None, 500)],
}


def _base(run_id: str, suite: str, day_hour: str) -> dict:
    return {"suite": suite, "run_id": run_id, "device": "cpu", "device_name": "Test CPU", "threads": 1,
            "determinism": "strict", "status": "ok", "git_commit": COMMIT[run_id], "git_dirty": False,
            "started_at": f"2026-01-{day_hour}:00:00+00:00", "dtype": "float32"}


def kernel_rows(run_id: str) -> list[dict]:
    rows = []
    base_time = {(size, seed): t for size, _, v, seed, t, _ in KERNEL[run_id] if v == "loop"}
    for size, n, variant, seed, t, iqr in KERNEL[run_id]:
        rows.append(_base(run_id, "ks", run_id[6:8] + "T" + run_id[9:11]) | {
            "experiment": "corr", "kind": "kernel", "family": "corr2d", "variant": variant, "size": size,
            "config": json.dumps({"input": [n, n], "kernel": [3, 3], "padding": [0, 0], "stride": [1, 1]}),
            "seed": seed, "time_median_s": t, "time_iqr_s": iqr, "n_measurements": 9, "baseline": "loop",
            "speedup": base_time[(size, seed)] / t, "flops": 2.0 * 9 * (n - 2) ** 2,
            "gflops": 2.0 * 9 * (n - 2) ** 2 / t / 1e9, "code_hash": f"hash-{variant}", "wall_s": 0.1})
    return rows


def train_rows(run_id: str) -> list[dict]:
    return [_base(run_id, "ts", run_id[6:8] + "T" + run_id[9:11]) | {
        "experiment": model, "kind": "train", "family": "train", "variant": model, "size": "28x28",
        "config": "{}", "seed": seed, "model": model, "epochs": 3, "batch_size": 64, "lr": 0.1, "resize": "28x28",
        "precision": "fp32", "val_acc": acc, "best_val_acc": acc, "train_loss": 1 - acc, "images_per_s": ips,
        "epoch_time_s": epoch_s, "train_time_s": 3 * epoch_s, "time_to_target_s": ttt,
        "peak_mem_bytes": mib * MIB, "params": 1000, "wall_s": 3 * epoch_s}
        for model, seed, acc, ips, epoch_s, ttt, mib in TRAIN[run_id]]


def train_steps(run_id: str) -> list[dict]:
    """Three epochs per row, ending at the row's numbers."""
    steps = []
    for model, seed, acc, ips, epoch_s, _, _ in TRAIN[run_id]:
        for epoch in (1, 2, 3):
            key = {"experiment": model, "variant": model, "size": "28x28", "seed": seed, "step": epoch}
            values = {"train_loss": 2.3 / epoch, "train_acc": acc * epoch / 3, "val_loss": 2.0 / epoch,
                      "val_acc": acc - 0.1 * (3 - epoch), "images_per_s": ips, "epoch_time_s": epoch_s}
            steps += [key | {"metric": k, "value": v} for k, v in values.items()]
    return steps


def write_runs(root: Path) -> dict[str, Path]:
    """results/<suite>/<run>/ for the four runs; returns run id -> run directory."""
    import pandas as pd

    dirs = {}
    for run_id in (KA, KB):
        dirs[run_id] = root / "ks" / run_id
        results.save(kernel_rows(run_id), dirs[run_id])
    for run_id in (TA, TB):
        dirs[run_id] = root / "ts" / run_id
        results.save(train_rows(run_id), dirs[run_id])
        pd.DataFrame(train_steps(run_id)).to_csv(dirs[run_id] / "steps.csv", index=False)
    return dirs
