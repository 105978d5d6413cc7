"""The training experiment kind, registered into harness.core.kinds: `train` (one registered model on
Fashion-MNIST with the book's recipe). Its tasks are harness.train.loop."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.core.kinds import Kind, SpecBase, register_kind
from harness.core.registry import unknown_name_message
from harness.train.datasets import SHIPPED


class TrainSpec(SpecBase):
    """Train one registered model on Fashion-MNIST with the book's recipe (SGD, cross-entropy)."""

    kind: Literal["train"]
    model: str
    model_args: dict[str, Any] = {}
    # fashion_mnist: the full set from the data directory; fashion_mnist_sample: 2,000 + 1,000 examples
    # shipped in the package (harness.train.datasets)
    dataset: Literal["fashion_mnist", "fashion_mnist_sample"] = "fashion_mnist"
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(10, ge=1, le=10_000)
    optimizer: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    resize: tuple[int, int] | None = None  # (h, w) on the device per batch; None: 28x28
    train_limit: int | None = Field(None, ge=1)  # first N training images (smoke runs)
    val_limit: int | None = Field(None, ge=1)  # first N validation images
    target_accuracy: float | None = Field(None, gt=0, le=1)  # time_to_target_s is measured to it
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
    return problems


def _train_tasks(exp, device):
    from harness.train.loop import train_tasks  # torch and the models: only when a suite trains

    return train_tasks(exp, device)


def describe_train(spec: TrainSpec) -> tuple[int, str]:
    limit = f", first {spec.train_limit}/{spec.val_limit or 'all'} images" if spec.train_limit else ""
    return 1, (f"model {spec.model} {'x'.join(map(str, spec.input_size))}, {spec.epochs} epochs, "
               f"batch {spec.batch_size}, lr {spec.lr}, {spec.precision}, {spec.dataset}{limit}")


TRAIN = register_kind(Kind("train", TrainSpec, _train_tasks, check_train, describe=describe_train))
