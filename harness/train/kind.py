"""The training experiment kind, registered into harness.core.kinds: `train` (one registered model on
Fashion-MNIST with the book's recipe). Its tasks are harness.train.loop."""
from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import Field

from harness.core.kinds import Float, Int, Kind, SpecBase, register_kind
from harness.core.registry import unknown_name_message
from harness.train.datasets import SHIPPED
from harness.train.estimate import estimate_train


class TrainSpec(SpecBase):
    """Train one registered model on Fashion-MNIST with the book's recipe (SGD, cross-entropy)."""

    kind: Literal["train"]
    model: str
    model_args: dict[str, Any] = {}
    # fashion_mnist: the full set from the data directory; fashion_mnist_sample: 2,000 + 1,000 examples
    # shipped in the package (harness.train.datasets)
    dataset: Literal["fashion_mnist", "fashion_mnist_sample"] = "fashion_mnist"
    batch_size: Int = Field(128, ge=1)
    epochs: Int = Field(10, ge=1, le=10_000)
    optimizer: Literal["sgd"] = "sgd"
    lr: Float = Field(0.1, gt=0)
    resize: tuple[Int, Int] | None = None  # (h, w) on the device per batch; None: 28x28
    train_limit: Int | None = Field(None, ge=1)  # first N training images (smoke runs)
    val_limit: Int | None = Field(None, ge=1)  # first N validation images
    target_accuracy: Float | None = Field(None, gt=0, le=1)  # time_to_target_s is measured to it
    # under torchrun: batch norms normalise over the global batch (SyncBatchNorm, CUDA/NCCL only);
    # it changes the maths, not determinism (allowed in strict mode); no effect in one process
    sync_batchnorm: bool = False
    # speed options: they trade determinism for speed and are refused in strict mode
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    channels_last: bool = False
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"  # reduce-overhead: CUDA graphs
    cudnn_benchmark: bool = False

    @property
    def input_size(self) -> tuple[int, int]:
        return self.resize or (28, 28)


SPEED_OPTIONS = {"precision": "fp32", "channels_last": False, "compile": "none", "cudnn_benchmark": False}


def check_train(spec: TrainSpec, where: str) -> list[tuple[str, str]]:
    """The model against the model registry and its factory's arguments; speed options only in
    fast mode; limits within a shipped dataset's size."""
    import inspect

    from harness.models import MODELS

    problems = []
    shipped = SHIPPED.get(spec.dataset)
    for field, size, split in (("train_limit", shipped and shipped.train, "training"),
                               ("val_limit", shipped and shipped.val, "validation")):
        if size and (getattr(spec, field) or 0) > size:
            problems.append((f"{where}.{field}", f"{getattr(spec, field)}: dataset {spec.dataset} has {size:,} "
                             f"{split} images (use at most {size}, or dataset: fashion_mnist for the full set)"))
    if spec.determinism == "strict":
        for field, off in SPEED_OPTIONS.items():
            if getattr(spec, field) != off:
                problems.append((f"{where}.{field}", f"{getattr(spec, field)!r} trades determinism for speed: "
                                 f"set `determinism: fast` to use it (strict allows only {off!r})"))
    if spec.model not in MODELS:
        return problems + [(f"{where}.model", unknown_name_message("model", spec.model, MODELS.names()))]
    accepted = [n for n, p in inspect.signature(MODELS.get(spec.model)).parameters.items()
                if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]
    accepted = [n for n in accepted if n not in ("num_classes", "in_channels", "input_size")]
    for key in spec.model_args:
        if key not in accepted:
            problems.append((f"{where}.model_args.{key}", unknown_name_message(
                f"argument of model {spec.model}:", key, accepted) if accepted else
                f"model {spec.model} takes no model_args"))
    if min(spec.input_size) < 8:
        problems.append((f"{where}.resize", f"{list(spec.input_size)}: sizes below 8 pixels cannot be convolved"))
    return problems or check_model(spec, where)


IN_CHANNELS = 1  # Fashion-MNIST is grayscale
BYTES = 4  # fp32 activations, weights and gradients (bf16 autocast needs less: an upper estimate)
_PROBES: dict[tuple, tuple[str | None, str | None, int]] = {}  # one probe per distinct model and batch


def check_model(spec: TrainSpec, where: str) -> list[tuple[str, str]]:
    """Bound the model by arithmetic over its arguments first (models.estimate_size: its layers, at
    most models.MAX_LAYERS, and a training step's memory), so that a model too deep or too large is
    refused without being built; then build it with its model_args and push one batch of the input
    size through it without computing it (models.probe_model: milliseconds): a bad argument value,
    or an input the network cannot take, is an input error now rather than a failed row later. The
    same probe measures a training step's memory, fp32: the activations every layer keeps for
    backward, plus weights and gradients. More than this machine's RAM is refused (the host-memory
    rule; GPU memory is a run-time matter: an out-of-memory row)."""
    from harness.core.envinfo import gib, host_memory_bytes
    from harness.models import MAX_LAYERS, estimate_size, training_bytes

    shape = (spec.batch_size, IN_CHANNELS, *spec.input_size)
    ram = host_memory_bytes()
    size = "x".join(map(str, spec.input_size)) + ("" if spec.resize else " (the default without resize)")
    place = f"{where}.resize" if spec.resize else f"{where}.batch_size"
    args_place = f"{where}.model_args" if spec.model_args else f"{where}.model"
    too_big = f"more than this machine's {gib(ram)} of memory; use a smaller resize or batch_size"

    def step_too_big(need: int, place: str, params: str = "") -> list[tuple[str, str]]:
        return [(place, f"a training step of model {spec.model}{params} on batches of {spec.batch_size} at {size} "
                 f"needs about {gib(need)} (activations kept for backward, weights and gradients, fp32), "
                 + (too_big.replace("resize or batch_size", "resize, batch_size or model_args") if params else too_big))]

    if BYTES * math.prod(shape) > ram:  # the batch alone: refused before the model is even built
        return [(place, f"one batch of {spec.batch_size} images at {size} needs {gib(BYTES * math.prod(shape))}, "
                 + too_big)]
    estimate = estimate_size(spec.model, shape, **spec.model_args)  # None: no declared size, or bad arguments
    if estimate is not None and estimate.layers > MAX_LAYERS:
        return [(args_place, f"model {spec.model} with model_args {json.dumps(spec.model_args, default=repr)} has "
                 f"{estimate.layers:,} layers (convolutions and linear layers), more than the {MAX_LAYERS:,} a "
                 f"suite may build (the deepest registered here, resnext, has 29)")]
    if estimate is not None and training_bytes(estimate, shape, BYTES) > ram:
        return step_too_big(training_bytes(estimate, shape, BYTES), args_place if spec.model_args else place,
                            f" ({estimate.params:,} parameters)" if spec.model_args else "")
    key = (spec.model, json.dumps(spec.model_args, sort_keys=True, default=repr), shape)
    if key not in _PROBES:
        _PROBES[key] = _probe(spec, shape)
    build_error, forward_error, need = _PROBES[key]
    if build_error:
        return [(args_place, f"model {spec.model} cannot be built with model_args "
                 f"{json.dumps(spec.model_args, default=repr)}: {build_error}")]
    if forward_error:
        return [(f"{where}.resize", f"model {spec.model} cannot take {size} images in batches of "
                 f"{spec.batch_size}: {forward_error}")]
    if need > ram:
        return step_too_big(need, place)
    return []


def _probe(spec: TrainSpec, shape: tuple) -> tuple[str | None, str | None, int]:
    """(build error, forward error, bytes of a training step) of one probe."""
    from harness.core.errors import UserError
    from harness.models import ModelBuildError, probe_model

    def said(e: BaseException) -> str:
        text = str(e).strip() if isinstance(e, UserError) else f"{type(e).__name__}: {str(e).strip()}"
        first = text.splitlines()[0] if text else type(e).__name__
        return first if len(first) <= 300 else first[:297] + "..."

    try:
        probe = probe_model(spec.model, shape, **spec.model_args)
    except ModelBuildError as e:
        return said(e.cause), None, 0
    except Exception as e:  # noqa: BLE001 - any failure of the forward is the input's
        return None, said(e), 0
    if probe.norm_values is not None and probe.norm_values <= 1:
        return None, (f"a BatchNorm layer would see one value per channel in training (batch of "
                      f"{spec.batch_size}, 1x1 after downsampling); use batch_size >= 2 or a larger resize"), 0
    return None, None, BYTES * (probe.activations + math.prod(shape) + 2 * probe.params)


def _train_tasks(exp, device):
    from harness.train.loop import train_tasks  # torch and the models: only when a suite trains

    return train_tasks(exp, device)


def describe_train(spec: TrainSpec) -> tuple[int, str]:
    limit = f", first {spec.train_limit}/{spec.val_limit or 'all'} images" if spec.train_limit else ""
    return 1, (f"model {spec.model} {'x'.join(map(str, spec.input_size))}, {spec.epochs} epochs, "
               f"batch {spec.batch_size}, lr {spec.lr}, {spec.precision}, {spec.dataset}{limit}")


TRAIN = register_kind(Kind("train", TrainSpec, _train_tasks, check_train, describe=describe_train,
                          estimate=estimate_train))
