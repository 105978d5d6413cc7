"""scripts/gpu-validate.sh end to end, on this machine's CPU with miniature suites: the same stages
the GPU node runs (install, env, kernels, strict, fast, determinism, baseline, summary, pack), then
the packed runs synced into MLflow as the README says to do back home."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

from conftest import REPO, write_suite
from mlflow.tracking import MlflowClient

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

    with tarfile.open(out / "runs.tar.gz") as tar:
        assert not [n for n in tar.getnames() if "checkpoints" in n]

    # back home: unpack, sync into MLflow, curated reports and the baseline
    home = tmp_path / "results"
    env = env | {"RESULTS": str(home), "MLFLOW_TRACKING_URI": mlflow_uri}
    imp = subprocess.run(["bash", REPO / "scripts" / "gpu-import.sh", "cpu-test", out], env=env,
                         capture_output=True, text=True, timeout=600)
    assert imp.returncode == 0, imp.stdout[-3000:] + imp.stderr[-3000:]
    # kernels, strict, fast and the determinism run: 4 run directories, each with its journal
    assert len(list((home / "gpu" / "cpu-test").rglob("tracking.jsonl"))) == 4
    assert imp.stdout.count("synced ") == 4 and "unchanged" not in imp.stdout
    ref = home / "reference" / "cpu-test"
    assert sorted(p.name for p in ref.iterdir()) == ["env.json", "summary.md", "v-kernels-report.md",
                                                     "v-train-fast-report.md", "v-train-report.md"]
    assert "Result: every fingerprint equal." in (ref / "summary.md").read_text()
    assert (home / "baselines" / "kernels-cpu.json").exists()
    client = MlflowClient(tracking_uri=mlflow_uri)
    names = {e.name for e in client.search_experiments()}
    assert {"v-kernels", "v-train", "v-train-fast"} <= names
    again = subprocess.run(["bash", REPO / "scripts" / "gpu-import.sh", "cpu-test", out], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("unchanged") == 4, again.stdout + again.stderr
    shutil.rmtree(work)
