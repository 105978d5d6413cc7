"""Model FLOPs utilisation: training FLOPs counted once per model, and the device's peak.

`train_flops_per_image` runs one forward and backward pass of a copy of the model on the meta
device under torch.utils.flop_counter.FlopCounterMode: shapes only, no memory, no RNG drawn, the
model untouched. Convolutions and matrix products are counted (a multiply-add is 2 FLOPs), in the
forward pass and both backward products (input and weight gradients); pooling, activations,
normalisation and the optimizer step count 0, as in the usual MFU definition. torch's own formula
for the convolution backward counts a grouped convolution's weight gradient `groups` times over
(ResNeXt's 32-group layers came out at 34x their forward FLOPs instead of 3x); `_conv_backward_flop`
replaces it with one that counts each gradient as the forward product it is.

`peak_tflops` is the dense (no sparsity) peak of a GPU for the precision in use, from the vendor's
data sheets. A GPU that is not in the table, or a CPU, gets None: no MFU is reported rather than a
wrong one.
"""
from __future__ import annotations

import copy

# Dense peak TFLOP/s by precision: fp32 without tensor cores (strict mode), TF32 and BF16 tensor
# cores. Matched against torch.cuda.get_device_name() in order: the first entry whose every word
# is in the name wins, so the more specific names come first.
PEAKS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("H100", "PCIe"), {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    (("H100", "NVL"), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0}),
    (("H100",), {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),  # SXM5, e.g. "NVIDIA H100 80GB HBM3"
    (("H200",), {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),  # SXM, same compute as H100 SXM
    (("GH200",), {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    (("A100",), {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),  # SXM4 and PCIe
    (("L40S",), {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0}),
    (("L4",), {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
]


def peak_tflops(device_name: str | None, precision: str) -> float | None:
    """Dense peak TFLOP/s of the GPU called `device_name` at `precision` (fp32 | tf32 | bf16), or None."""
    if not device_name:
        return None
    words = device_name.replace("-", " ").split()
    for keys, peaks in PEAKS:
        if all(k in words for k in keys):
            return peaks.get(precision)
    return None


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None) -> int:
    """FLOPs of aten.convolution_backward: the input gradient is a (transposed) convolution of the
    output gradient with the weights, the weight gradient one of the input with the output gradient;
    each costs what the forward convolution costs, grouped or not."""
    from torch.utils.flop_counter import conv_flop_count

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, x_shape, not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


def train_flops_per_image(model, input_size: tuple[int, int], in_channels: int = 1) -> int:
    """FLOPs of one training step per image (forward + backward), counted on a meta-device copy."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    meta.train()
    batch = 2  # a batch of one would make BatchNorm refuse to train; the count is per image
    x = torch.empty(batch, in_channels, *input_size, device="meta")
    y = torch.zeros(batch, dtype=torch.long, device="meta")
    fixed = {torch.ops.aten.convolution_backward: _conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=fixed) as counter:
        F.cross_entropy(meta(x), y).backward()
    return int(counter.get_total_flops()) // batch


def utilisation(flops_per_image: int | None, images_per_s: float | None, device_name: str | None,
                precision: str) -> dict:
    """achieved_tflops (training FLOPs x images/s) and mfu (achieved / peak, when the peak is known)."""
    if not flops_per_image or not images_per_s:
        return {}
    achieved = flops_per_image * images_per_s / 1e12
    peak = peak_tflops(device_name, precision)
    return {"achieved_tflops": achieved, "mfu": achieved / peak if peak else None}
