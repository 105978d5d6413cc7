"""The networks of d2l ch. 7-8, registered timm-style: one decorator, one way in.

    from harness.models import create_model, list_models
    list_models("res*")                              # ['resnet18', 'resnext']
    model = create_model("resnet18", input_size=(96, 96))
    create_model("vgg", input_size=(224, 224), arch=[[1, 64], [1, 128], [2, 256], [2, 512], [2, 512]])

A model factory is a function `name(num_classes=10, **its own args) -> nn.Module`, registered
under its function name by `@register_model` when its module is imported. The models are built
from lazy layers, as the book's; `create_model` materialises them with a dry forward pass at the
given input size and then applies the book's `init_cnn`, as d2l's `apply_init` does.

May import: harness.core. Never run/, track/, views/, gate/ or the CLI.
"""
from harness.models.registry import (MODELS, ModelBuildError, Probe, accepted_args, create_model, list_models,
                                     probe_model, register_model)
from harness.models.size import MAX_LAYERS, Size, estimate_size, training_bytes
from harness.models.summary import init_cnn, layer_summary, summary_table
from harness.models import lenet, vgg  # noqa: F401  (register lenet, vgg; this order is list_models() order)
from harness.models.resnet import ResNeXtBlock, Residual  # (registers resnet18, resnext)

__all__ = [
    "MODELS",
    "register_model",
    "create_model",
    "list_models",
    "accepted_args",
    "probe_model",
    "Probe",
    "ModelBuildError",
    "MAX_LAYERS",
    "Size",
    "estimate_size",
    "training_bytes",
    "Residual",
    "ResNeXtBlock",
    "init_cnn",
    "layer_summary",
    "summary_table",
]
