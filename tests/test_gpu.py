"""On a CUDA device only (skipped elsewhere, saying so): strict determinism of the training loop on
the GPU, fast mode with CUDA graphs, and MFU against the peak table."""
from __future__ import annotations

import pytest
from conftest import REPO, run_cli, write_suite

from harness.run import results

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

FAST = """
suite: gpu-fast
defaults: {batch_size: 64, epochs: 2, seed: 0, train_limit: 512, val_limit: 256, determinism: fast,
           precision: bf16, channels_last: true, cudnn_benchmark: true, compile: default}
experiments:
  - {name: lenet, kind: train, model: lenet, lr: 0.1, compile: reduce-overhead, channels_last: false}
  - {name: resnext, kind: train, model: resnext, lr: 0.01, resize: [32, 32]}
"""


def test_strict_training_on_cuda_is_bitwise_repeatable(tmp_path, data_dir):
    fps = []
    for name in ("a", "b"):
        proc = run_cli("run", REPO / "suites" / "smoke.yaml", "--device", "cuda", "--no-tracking",
                       "--data-dir", data_dir, "--out", tmp_path / name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        (run_dir,) = (tmp_path / name / "smoke").iterdir()
        df = results.load(run_dir)
        assert (df.status == "ok").all() and (df.device == "cuda").all()
        fps.append(df.fingerprint.tolist())
    assert fps[0] == fps[1]


def test_fast_mode_with_cuda_graphs_reports_compile_time_and_mfu(tmp_path, data_dir):
    from harness.train.mfu import peak_tflops

    write_suite(tmp_path / "fast.yaml", FAST)
    proc = run_cli("run", "fast.yaml", "--device", "cuda", "--no-tracking", "--data-dir", data_dir,
                   "--out", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "r" / "gpu-fast").iterdir()
    df = results.load(run_dir).set_index("experiment")
    assert (df.status == "ok").all() and (df.compile_s > 0).all()
    assert (df.achieved_tflops > 0).all()
    if peak_tflops(torch.cuda.get_device_name(), "bf16") is not None:
        assert df.mfu.between(0, 1).all()
    else:
        assert df.mfu.isna().all()
