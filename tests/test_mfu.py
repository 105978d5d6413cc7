"""Training FLOPs per image and MFU: counted on a meta-device copy, grouped convolutions counted
right, peaks only for GPUs the table knows."""
from __future__ import annotations

import pytest
import torch

from harness.models import create_model, summary_table
from harness.train import mfu


@pytest.mark.parametrize("groups", [1, 4, 32])
def test_a_convolution_trains_at_three_times_its_forward_flops_grouped_or_not(groups):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 128, 3), torch.nn.Conv2d(128, 128, 3, groups=groups),
                                torch.nn.Flatten(), torch.nn.LazyLinear(10))
    model(torch.zeros(1, 1, 12, 12))
    first = 2 * 128 * 9 * 10 * 10  # no input gradient for the first layer: forward + weight gradient
    second = 2 * 128 * (128 // groups) * 9 * 8 * 8
    linear = 2 * 128 * 8 * 8 * 10
    assert mfu.train_flops_per_image(model, (12, 12)) == 2 * first + 3 * second + 3 * linear


@pytest.mark.parametrize("name, size", [("lenet", (28, 28)), ("resnet18", (96, 96)), ("resnext", (96, 96))])
def test_model_training_flops_are_about_three_forwards_and_leave_the_model_alone(name, size):
    model = create_model(name, input_size=size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    flops = mfu.train_flops_per_image(model, size)
    forward = summary_table(model, (1, 1, *size))[-1]["flops"]
    assert 2.5 * forward < flops <= 3 * forward
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and all(p.grad is None for p in model.parameters())


def test_peaks_by_gpu_name_and_precision():
    assert mfu.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert mfu.peak_tflops("NVIDIA H100 80GB HBM3", "fp32") == 66.9
    assert mfu.peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert mfu.peak_tflops("NVIDIA H200", "tf32") == 494.7
    assert mfu.peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert mfu.peak_tflops("NVIDIA L40S", "bf16") == 362.0 and mfu.peak_tflops("NVIDIA L4", "bf16") == 121.0
    for unknown in ("NVIDIA GeForce RTX 4090", "Tesla V100-SXM2-16GB", "", None):
        assert mfu.peak_tflops(unknown, "bf16") is None


def test_utilisation_reports_no_mfu_without_a_known_peak():
    assert mfu.utilisation(1e9, 1000.0, "NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(
        {"achieved_tflops": 1.0, "mfu": 1.0 / 989.4})
    assert mfu.utilisation(1e9, 1000.0, None, "fp32") == {"achieved_tflops": 1.0, "mfu": None}
    assert mfu.utilisation(None, 1000.0, "NVIDIA H100 80GB HBM3", "fp32") == {}
