"""How long a `train` experiment will take on a device, before it runs: the `train` kind's
`estimate` (harness.core.kinds.Work, one unit per epoch); the suite's total, its refinement while
the suite runs and the printing are harness.run.estimate.

An epoch costs FLOPs: the training step's FLOPs per image (forward + backward, counted on the
meta device by mfu.train_flops_per_image; backward ~2x forward) x training images, plus a forward
pass (a third of that) x validation images. Its seconds are those FLOPs over a rate measured on
this device by `probe_rate`: a few training steps of the experiment's own model at its input
size, on 2 images, then on its batch size or the part of it predicted to take PROBE_STEP_S
(random inputs; SGD on a throw-away model; the global RNG untouched). A smaller batch than the
experiment's is less efficient: the estimate then errs long, until the first epoch corrects it.
On a CPU shared with other jobs the training's own steps can be far slower than the probe's
fastest (seen 4-40x on a 2-core machine with other jobs; within 20% on the same machine idle):
the first epoch shows it. Inside the timed
window: the steps (forward, loss, backward, optimizer step), synchronised on CUDA; outside:
building the model, a warm-up step. The probe is cached per process (model, arguments, input,
batch, device, precision) and spends about PROBE_BUDGET_S per process in its steps at most: past
it, a model not yet probed takes the geometric mean of the rates measured so far. The data
loading, the per-batch resize and the plots are not in the rate: a fixed OVERHEAD_S per
experiment stands for them, and the runner corrects both by what it measures
(harness.run.estimate).
"""
from __future__ import annotations

import json
import math
import time

from harness.core.kinds import Work
from harness.train.datasets import SHIPPED

FULL_SIZE = (60_000, 10_000)  # Fashion-MNIST's training and test images
PROBE_STEP_S = 0.4  # the probe's larger batch is one predicted to take this long a step
PROBE_BUDGET_S = 3.0  # probing time per process, all models together
OVERHEAD_S = 2.0  # per experiment: data, model, checkpoints, plots (corrected once one has run)
FALLBACK_RATE = 1e9  # FLOP/s when a probe fails (the run then shows why)

_RATES: dict[tuple, tuple[float, bool]] = {}  # probe key -> (FLOP/s, measured rather than borrowed)
_FLOPS: dict[tuple, int] = {}  # (model, args, input size) -> training FLOPs per image
_SPENT = [0.0]  # seconds of probing so far in this process


def images(spec) -> tuple[int, int]:
    """(training, validation) images one epoch of `spec` goes through."""
    shipped = SHIPPED.get(spec.dataset)
    n_train, n_val = (shipped.train, shipped.val) if shipped else FULL_SIZE
    return min(spec.train_limit or n_train, n_train), min(spec.val_limit or n_val, n_val)


def epoch_flops(flops_per_image: float, spec) -> float:
    """FLOPs of one epoch: training steps on the training images, forward passes on the validation ones."""
    n_train, n_val = images(spec)
    return flops_per_image * (n_train + n_val / 3)


def estimate_train(spec, device, rate: float | None = None, world_size: int | None = None) -> Work:
    """The experiment's epochs, each epoch_flops / (rate x processes) seconds; `rate` (FLOP/s per
    process) is probed on `device` unless given."""
    from harness.core import distributed

    world_size = world_size or distributed.world().size
    if rate is None:
        rate, _ = probe_rate(spec, device, world_size)
    flops = flops_per_image(spec)  # counted by the probe already
    epoch_s = epoch_flops(flops, spec) / (rate * world_size)
    return Work("epoch", (tuple(epoch_s for _ in range(spec.epochs)),), OVERHEAD_S, rate)


def _model_key(spec) -> tuple:
    return spec.model, json.dumps(spec.model_args, sort_keys=True, default=repr), tuple(spec.input_size)


def flops_per_image(spec) -> int:
    """Training FLOPs per image of the spec's model (counted once per process and model)."""
    key = _model_key(spec)
    if key not in _FLOPS:
        import torch

        from harness.models import create_model
        from harness.train import mfu

        with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG alone
            model = create_model(spec.model, input_size=spec.input_size, **spec.model_args)
        _FLOPS[key] = mfu.train_flops_per_image(model, spec.input_size)
    return _FLOPS[key]


def probe_rate(spec, device, world_size: int = 1) -> tuple[float, bool]:
    """(FLOP/s of this model's training steps on `device`, whether measured); see the module."""
    batch = max(1, spec.batch_size // world_size)
    key = _model_key(spec) + (batch, str(device), spec.precision, spec.channels_last)
    if key not in _RATES:
        measured = [r for r, own in _RATES.values() if own]
        if _SPENT[0] >= PROBE_BUDGET_S and measured:
            _RATES[key] = (math.exp(sum(map(math.log, measured)) / len(measured)), False)
        else:
            try:
                _RATES[key] = (_probe(spec, device, batch), True)
            except Exception:  # noqa: BLE001 - an estimate never stops a run: the run reports the failure
                _RATES[key] = (FALLBACK_RATE, False)
    return _RATES[key]


def _probe(spec, device, batch: int) -> float:
    import torch
    import torch.nn.functional as F

    from harness.models import create_model

    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(0)
        model = create_model(spec.model, input_size=spec.input_size, **spec.model_args).to(device)
        if _model_key(spec) not in _FLOPS:
            from harness.train import mfu

            _FLOPS[_model_key(spec)] = mfu.train_flops_per_image(model, spec.input_size)
        if spec.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
        autocast = spec.precision == "bf16"

        def step(n: int) -> float:
            x = torch.rand(n, 1, *spec.input_size, device=device)
            y = torch.randint(0, 10, (n,), device=device)
            sync()
            t = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync()
            return time.perf_counter() - t

        def fastest(n: int, most: int, box_s: float) -> float:
            """The fastest of 2 to `most` steps, stopping once `box_s` is spent: a busy machine
            stalls single steps (seen: 1 s for LeNet's 2 ms), the fastest is the model's own time."""
            best, spent, k = math.inf, 0.0, 0
            while k < 2 or (k < most and spent < box_s):
                t = step(n)
                best, spent, k = min(best, t), spent + t, k + 1
            return best

        # Two sizes: 2 images (after a warm-up step), then the largest batch up to the experiment's
        # that a step of 2 predicts to take PROBE_STEP_S (a linear prediction: small batches are
        # less efficient, so it errs short).
        t0 = time.perf_counter()  # the budget counts the steps, not importing and building
        n = min(batch, 2)
        step(n)
        best = fastest(n, 8, 0.2)
        big = min(batch, int(n * PROBE_STEP_S / max(best, 1e-9)))
        if big > n and _SPENT[0] + time.perf_counter() - t0 < PROBE_BUDGET_S:
            n = big
            best = fastest(n, 4, 2 * PROBE_STEP_S)
        _SPENT[0] += time.perf_counter() - t0
    return flops_per_image(spec) * n / best
