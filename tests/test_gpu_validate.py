"""scripts/gpu-validate.sh end to end, on this machine's CPU with miniature suites: the same stages
the GPU node runs (install, env, kernels, strict, fast, determinism, baseline, summary, pack), then
the packed runs synced into MLflow as the README says to do back home."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

from conftest import REPO, run_cli, write_suite

KERNELS = """
suite: v-kernels
defaults: {min_run_time_s: 0.01}
experiments:
  - {name: corr, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[8, 8], [32, 32]], kernel: [[3, 3]]}}
"""
STRICT = """
suite: v-train
defaults: {batch_size: 64, epochs: 1, seed: 0, train_limit: 256, val_limit: 128}
experiments:
  - {name: lenet, kind: train, model: lenet, lr: 0.1}
  - {name: resnet18, kind: train, model: resnet18, lr: 0.01, resize: [32, 32]}
"""
FAST = """
suite: v-train-fast
defaults: {batch_size: 64, epochs: 1, seed: 0, train_limit: 256, val_limit: 128, determinism: fast,
           precision: bf16, channels_last: true}
experiments:
  - {name: lenet, kind: train, model: lenet, lr: 0.1}
  - {name: resnet18, kind: train, model: resnet18, lr: 0.01, resize: [32, 32]}
"""
CI = """
suite: v-ci
defaults: {min_run_time_s: 0.005, threads: 1}
experiments:
  - {name: corr, kind: kernel, kernel: corr2d, variants: [native], sizes: {input: [[32, 32]], kernel: [[3, 3]]}}
"""


def test_the_validation_script_runs_every_stage_and_its_runs_sync_into_mlflow(tmp_path, data_dir, mlflow_uri):
    suites = {name: write_suite(tmp_path / f"{name}.yaml", text)
              for name, text in (("k", KERNELS), ("s", STRICT), ("f", FAST), ("ci", CI))}
    out, work = tmp_path / "out", tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
        "DATA_DIR": str(data_dir), "OUT": str(out), "WORK": str(work), "DEVICE": "cpu", "PYTHON": sys.executable,
        "KERNEL_SUITE": str(suites["k"]), "STRICT_SUITE": str(suites["s"]), "FAST_SUITE": str(suites["f"]),
        "CI_SUITE": str(suites["ci"]), "HARNESS_GIT_COMMIT": "0123abc"}
    proc = subprocess.run(["bash", REPO / "scripts" / "gpu-validate.sh", "setup", "env", "kernels", "strict", "fast",
                           "determinism", "baseline"], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "done: 0 failed stage(s)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["env.json", "kernels-cpu.json", "log.txt", "runs.tar.gz", "summary.md"]
    assert (work / "site" / "harness" / "__init__.py").exists()  # installed with --no-deps

    summary = (out / "summary.md").read_text()
    assert "| v-train | " in summary and "| v-train-fast | " in summary
    assert "strict fp32" in summary and "fast bf16" in summary
    assert "`v-train/lenet`: 2 runs" in summary and "Result: every fingerprint equal." in summary
    assert "cases timed" in summary and "## Machine" in summary

    home = tmp_path / "home"
    home.mkdir()
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
        assert not [n for n in names if "checkpoints" in n]
        tar.extractall(home, filter="data")
    # kernels, strict, fast and the determinism run: 4 run directories, each with its journal
    assert len(list(home.rglob("tracking.jsonl"))) == 4
    proc = run_cli("sync", home / "runs", "--tracking-uri", mlflow_uri, "--out", home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("synced ") == 4 and "unchanged" not in proc.stdout
    again = subprocess.run([sys.executable, REPO / "scripts" / "validate_summary.py", home / "runs"],
                           capture_output=True, text=True)
    assert again.returncode == 0 and "Result: every fingerprint equal." in again.stdout
    shutil.rmtree(work)
