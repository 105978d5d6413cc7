"""The training loop: the book's recipe (SGD, cross-entropy, Xavier init) on Fashion-MNIST held on
the device, with per-epoch metrics, checkpoints, resume, divergence detection and speed options.

Timed windows (all synchronised on CUDA): `images_per_s` covers the training batches of an epoch
only (forward, backward, step; per-batch resize included, evaluation excluded); `epoch_time_s`
covers training and evaluation; `time_to_target_s` is the cumulative epoch time until the
validation accuracy first reaches `target_accuracy`. With `compile`, the first step of each batch
size (tracing and compilation) is timed on its own as `compile_s` and kept out of every other number. Loss and
accuracy accumulate on the device:
the only host syncs are at the end of each epoch's training and evaluation passes.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from functools import partial

import torch
import torch.nn.functional as F

from harness.core import determinism, distributed, envinfo, telemetry
from harness.models import create_model
from harness.core.kinds import Task
from harness.train import checkpoint, datasets, ddp, plots
from harness.train import mfu
from harness.train.data import (Split, dataset_root, eval_batches, load_fashion_mnist, memory_budget, prepare,
                                to_input, train_batches)

_DATA_CACHE: dict = {}  # (root, device, limits) -> FashionMNIST: loaded once per invocation
_PREPARED: dict = {}  # (data, resize) -> the data resized once, or None when it did not fit


def train_tasks(exp, device) -> list[Task]:
    spec = exp.spec
    world = distributed.world()
    fields = {"family": "train", "variant": spec.model, "size": "x".join(map(str, spec.input_size)),
              "dtype": {"fp32": "float32", "tf32": "tf32", "bf16": "bfloat16"}[spec.precision],
              "config": json.dumps({"model_args": spec.model_args, "resize": spec.resize, "dataset": spec.dataset}),
              "model": spec.model, "epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr,
              "resize": "x".join(map(str, spec.input_size)), "precision": spec.precision,
              "per_rank_batch": spec.batch_size // world.size}
    return [Task(fields, {"model": spec.model}, partial(train, exp, device))]


def load_data(spec, device, data_dir, download=False):
    """The spec's dataset: a shipped one (fashion_mnist_sample) from the package whatever data_dir
    is, never downloaded; the full set from data_dir (--data-dir, $HARNESS_DATA_DIR, the default)."""
    root = dataset_root(spec.dataset, data_dir)
    key = (str(root), str(device), spec.train_limit, spec.val_limit)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_fashion_mnist(root, device, train_limit=spec.train_limit, val_limit=spec.val_limit,
                                              download=download and datasets.needs_data_dir(spec.dataset))
    return _DATA_CACHE[key]


def prepared_data(spec, device, data, ctx):
    """The data resized once for the whole run when it fits (see data.prepare), else as loaded.

    One resized set is kept at a time (the next experiment's size usually differs)."""
    key = (id(data), spec.resize)
    if key not in _PREPARED:
        _PREPARED.clear()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        t0 = time.perf_counter()
        ready = prepare(data, spec.resize, memory_budget(device))
        if ready is not None:
            ctx.note(f"  {len(data.train) + len(data.val):,} images resized once to {'x'.join(map(str, spec.resize))} "
                     f"on {device.type} ({ready.train.images.nbytes / 2**30 + ready.val.images.nbytes / 2**30:.1f} GiB, "
                     f"{time.perf_counter() - t0:.1f} s)")
        _PREPARED[key] = ready
    return _PREPARED[key] or data


def train(exp, device, ctx) -> dict:
    spec = exp.spec
    data = load_data(spec, device, ctx.data_dir, ctx.download)
    ctx.dataset(spec.dataset, data.digest, str(data.source), "train+val")  # the name says which set, the digest which data
    data = prepared_data(spec, device, data, ctx)
    _speed_settings(spec)
    determinism.seed_everything(spec.seed)
    world = distributed.world()
    model = create_model(spec.model, input_size=spec.input_size, **spec.model_args).to(device)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    flops = mfu.train_flops_per_image(model, spec.input_size)
    model = ddp.wrap(model, spec, world)  # under torchrun: DistributedDataParallel (harness.train.ddp)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr)
    history, start, elapsed, batches = [], 0, 0.0, []  # batches: the sampled per-batch loss (at, epoch, loss)
    prints = []  # the fingerprint after each epoch (`reproduce --epochs N` compares the N-th)
    if ctx.resume is not None:  # every process loads the same checkpoint
        checkpoint.restore(ctx.resume, model=ddp.unwrap(model), optimizer=optimizer)
        history, start, elapsed = list(ctx.resume["history"]), ctx.resume["epoch"], ctx.resume["elapsed_s"]
        batches = [tuple(b) for b in ctx.resume.get("batches", [])]
        prints = list(ctx.resume.get("epoch_fingerprints", []))[:start]  # older checkpoints: none
        prints = [None] * (start - len(prints)) + prints
        for i, metrics in enumerate(history):  # into steps.csv; MLflow has them from the first run
            ctx.log(metrics, i + 1, tracked=False)
        for at, _, loss in batches:
            ctx.log({plots.BATCH_METRIC: loss}, int(at), tracked=False)
        ctx.note(f"{exp.id}: resumed after epoch {start} from {ctx.checkpoint_dir}")
    step = _compiled_step(model, optimizer, spec, world.size)
    out = {"params": sum(p.numel() for p in model.parameters()), "dataset_digest": data.digest, "flops": flops}

    with telemetry.Sampler(str(device)) as sampler:
        for epoch in range(start, spec.epochs):
            metrics = _epoch(model, step, data, spec, epoch, device, ctx, compiling=spec.compile != "none"
                             and epoch == start)
            if "compile_s" in metrics:
                out["compile_s"] = metrics.pop("compile_s")
            batches += metrics.pop("batch_points")
            history.append(metrics)
            prints.append(_fingerprint(ddp.unwrap(model), history))  # outside every timed window
            elapsed += metrics["epoch_time_s"]
            diverged = not all(math.isfinite(metrics[k]) for k in ("train_loss", "val_loss"))
            if not diverged and world.writer:  # saved before the epoch is announced: what is printed is resumable
                checkpoint.save(ctx.checkpoint_dir, model=ddp.unwrap(model), optimizer=optimizer,
                                epoch=epoch + 1, history=history, spec_hash=exp.spec_hash, elapsed_s=elapsed,
                                batches=batches, epoch_fingerprints=prints, data_digest=data.digest)
            ctx.log(metrics, epoch + 1)
            ctx.unit_done(epoch + 1, metrics["epoch_time_s"])  # the suite's estimate learns from it
            ctx.note(f"  {exp.id} epoch {epoch + 1}/{spec.epochs}: train_loss {metrics['train_loss']:.4f} "
                     f"train_acc {metrics['train_acc']:.4f} val_loss {metrics['val_loss']:.4f} "
                     f"val_acc {metrics['val_acc']:.4f} {metrics['images_per_s']:,.0f} img/s "
                     f"{metrics['epoch_time_s']:.1f} s")
            if diverged:
                out |= {"status": "diverged", "error": f"loss became {metrics['train_loss']} in epoch {epoch + 1}"}
                break
    if history and world.writer:
        setting = plots.settings(spec.model, spec.lr, spec.batch_size, spec.epochs, len(data.train), spec.determinism,
                                 f"{device.type} ({envinfo.device_name(str(device))})")
        curves = plots.Curves(history, [(e, loss) for _, e, loss in batches])
        ctx.artifact(plots.training_curves(curves, ctx.run_dir / "plots" / f"{exp.id}.png",
                                           title=plots.experiment_title(exp.id, setting, ctx.run_dir.name)))
    out |= _summary(history, spec, elapsed, ddp.unwrap(model))
    if history:  # the last is the final fingerprint (the same weights and trace)
        out["epoch_fingerprints"] = json.dumps(prints)
    gpu = envinfo.device_name(str(device)) if device.type == "cuda" else None  # no CPU peaks: no CPU MFU
    per_device = out["images_per_s"] / world.size if out.get("images_per_s") is not None else None
    out |= mfu.utilisation(out["flops"], per_device, gpu, spec.precision)
    return out | sampler.summary() | {"status": out.get("status", "ok")}


def _epoch(model, step, data, spec, epoch, device, ctx, compiling: bool = False) -> dict:
    """One pass over the training set and one over the validation set. With `compiling`, the
    first batch of each size (where torch.compile traces and compiles: the full batches, and a
    short last one) is timed on its own as compile_s and left out of images_per_s and epoch_time_s."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    world = distributed.world()
    n, n_batches = len(data.train), math.ceil(len(data.train) / spec.batch_size)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    compile_s, compile_n, shapes = 0.0, 0, set()
    graphs = spec.compile == "reduce-overhead"
    every = math.ceil(n_batches / plots.BATCH_POINTS_PER_EPOCH)  # batches per point of the per-batch loss
    marks = []  # (global batch, this process's loss_sum then, all processes' images then) at each window's end
    sync()
    t0 = time.perf_counter()
    batches = train_batches(data.train, spec.batch_size, seed=spec.seed, epoch=epoch, part=(world.rank, world.size))
    for i, (x, y) in enumerate(batches):  # this process's part of each batch (all of it in one process)
        whole = min(spec.batch_size, n - i * spec.batch_size)  # the global batch's length
        new_shape = compiling and len(y) not in shapes  # compiled (again) for this batch size
        if new_shape:
            sync()
            tc = time.perf_counter()
        if graphs:  # the last step's outputs are consumed: CUDA graphs may overwrite them
            torch.compiler.cudagraph_mark_step_begin()
        loss, logits = step(to_input(x, spec.resize, channels_last=spec.channels_last), y, whole)
        if new_shape:
            sync()
            compile_s, compile_n = compile_s + time.perf_counter() - tc, compile_n + whole
            shapes.add(len(y))
        loss_sum += loss.detach() * len(y) if world.size == 1 else loss.detach() * (whole / world.size)
        correct += (logits.argmax(1) == y).sum()
        if (i + 1) % every == 0 or i + 1 == n_batches:  # a window of batches ends: a copy on the device, no sync
            marks.append((epoch * n_batches + i + 1, loss_sum.clone(), min((i + 1) * spec.batch_size, n)))
        ctx.progress(f"epoch {epoch + 1}/{spec.epochs}", i + 1, n_batches)
    sync()
    train_s = time.perf_counter() - t0
    ddp.all_sum(loss_sum, correct)  # under torchrun: the global sums on every process
    train_loss, train_acc = loss_sum.item() / n, correct.item() / n  # host sync
    ddp.same_buffers(model)
    val_loss, val_acc = evaluate(ddp.unwrap(model), data.val, spec)
    sync()
    out = {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
           "images_per_s": ((n - compile_n) / (train_s - compile_s)  # all processes' images; nan: every batch compiled
                            if n > compile_n else float("nan")),
           "epoch_time_s": time.perf_counter() - t0 - compile_s}
    out["batch_points"] = _batch_losses(marks, n_batches, ctx if world.writer else None)
    return out | ({"compile_s": compile_s} if compiling else {})


def _batch_losses(marks, n_batches: int, ctx) -> list[tuple[int, float, float]]:
    """The training loss per batch as ProgressBoard draws it: the mean over each window of the global
    batches (under torchrun the processes' sums are all-reduced, once per epoch: the same points as
    one process's), as (global batch, fractional epoch, loss) at the window's last batch; logged by
    the writer as `train_loss_batch`, its step the global batch number."""
    sums = []
    if marks:  # the epoch has synced already
        stacked = torch.stack([m[1] for m in marks])
        ddp.all_sum(stacked)
        sums = stacked.tolist()
    points, before, seen_before = [], 0.0, 0
    for (at, _, seen), total in zip(marks, sums):
        points.append((at, (total - before) / max(seen - seen_before, 1)))
        before, seen_before = total, seen
    if ctx is not None:
        for at, loss in points:
            ctx.log({plots.BATCH_METRIC: loss}, at)
    return [(at, at / n_batches, loss) for at, loss in points]


@torch.no_grad()
def evaluate(model, split, spec) -> tuple[float, float]:
    """Mean loss and accuracy on `split`; under torchrun each process evaluates its contiguous part
    and the sums are all-reduced (`model` is the unwrapped module: no DDP hooks)."""
    model.eval()
    loss_sum = torch.zeros((), device=split.labels.device)
    correct = torch.zeros((), device=split.labels.device, dtype=torch.long)
    lo, hi = ddp.part_bounds(len(split), distributed.world())
    part = split if (lo, hi) == (0, len(split)) else Split(split.images[lo:hi], split.labels[lo:hi], split.digest)
    for x, y in eval_batches(part, max(spec.batch_size, 256)):
        with _autocast(spec, y.device):
            logits = model(to_input(x, spec.resize, channels_last=spec.channels_last))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    ddp.all_sum(loss_sum, correct)
    return loss_sum.item() / len(split), correct.item() / len(split)


def _compiled_step(model, optimizer, spec, world_size: int = 1):
    """step(x, y, whole) -> (loss, logits): one SGD step on x, y, part of a global batch of `whole`
    examples. One process: the mean cross-entropy. Under torchrun: the sum over this process's part
    x world_size / whole, so that DDP's average of the gradients is the global batch's mean
    (harness.train.ddp); the part's summed loss is then loss x whole / world_size."""
    def step(x, y, whole):
        with _autocast(spec, y.device):
            logits = model(x)
            if world_size == 1:
                loss = F.cross_entropy(logits.float(), y)
            else:
                loss = F.cross_entropy(logits.float(), y, reduction="sum") * (world_size / whole)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, logits

    if spec.compile == "none":
        return step
    # A fresh start for every experiment: `step`'s code is shared by all of them, and each new model
    # adds guarded cache entries to it; past torch._dynamo's recompile limit (8: four experiments of
    # two batch sizes) the next one ran eager without a word (seen: resnext_nchw of training-fast).
    torch._dynamo.reset()
    # dynamic=False: the short last batch gets a graph of its own instead of turning every graph
    # dynamic. reduce-overhead replays CUDA graphs (launch-bound models such as LeNet at batch 128).
    return torch.compile(step, mode=None if spec.compile == "default" else spec.compile, dynamic=False)


def _autocast(spec, device):
    if spec.precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _speed_settings(spec) -> None:
    """Fast mode only (the suite refuses these in strict mode): TF32 matmuls/convs, cuDNN autotune."""
    if spec.determinism != "fast":
        return
    tf32 = spec.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = spec.cudnn_benchmark


def _summary(history: list[dict], spec, elapsed: float, model) -> dict:
    if not history:
        return {}
    last = history[-1]
    reached = _time_to_target(history, spec.target_accuracy)
    return {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")} | {
        "best_val_acc": max(h["val_acc"] for h in history),
        "images_per_s": _median([h["images_per_s"] for h in history]),
        "epoch_time_s": _median([h["epoch_time_s"] for h in history]),
        "train_time_s": elapsed,
        "time_to_target_s": reached,
        "fingerprint": _fingerprint(model, history),
    }


def _fingerprint(model, history: list[dict]) -> str:
    """sha256 over the weights now and the per-epoch loss/accuracy trace so far (harness.core.determinism):
    equal iff the training so far was bitwise equal. On CUDA: a device-to-host copy of the weights."""
    trace = [h[k] for h in history for k in ("train_loss", "train_acc", "val_loss", "val_acc")]
    return determinism.fingerprint(model.state_dict().values(), trace)


def _time_to_target(history: list[dict], target: float | None) -> float | None:
    if target is None:
        return None
    total = 0.0
    for h in history:
        total += h["epoch_time_s"]
        if h["val_acc"] >= target:
            return total
    return None


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
