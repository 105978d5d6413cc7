"""Contracts of harness.models: every registered model trains (timm-style, registry-parametrised),
is deterministic and fully materialised; the notebook's printed layer summaries and block shapes,
exactly; summary_table's parameter and FLOP counts; the errors a user sees."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

from harness.core.errors import UserError
from harness.models import (
    ModelBuildError,
    ResNeXtBlock,
    Residual,
    create_model,
    layer_summary,
    list_models,
    probe_model,
    summary_table,
)
from harness.models.lenet import lenet
from harness.models.resnet import resnet18
from harness.models.vgg import VGG11_ARCH, vgg

# A small valid input per model, to keep the CPU tests fast (VGG's five 2x2 pools need >= 32).
SMALL_INPUT = {"lenet": (28, 28), "vgg": (32, 32), "resnet18": (32, 32), "resnext": (32, 32)}


def small_model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, input_size=SMALL_INPUT[name])


def small_batch(name: str) -> torch.Tensor:
    return torch.randn(2, 1, *SMALL_INPUT[name], generator=torch.Generator().manual_seed(1))


def test_every_registered_model_has_a_small_test_input():
    assert list_models() == ["lenet", "vgg", "resnet18", "resnext"]
    assert list_models("res*") == ["resnet18", "resnext"]


# ---- every registered model ---------------------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward(name):
    model = small_model(name)
    assert model.training
    out = model(small_batch(name))
    assert out.shape == (2, 10)
    assert not out.isnan().any()
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.isfinite().all(), pname


@pytest.mark.parametrize("name", list_models())
def test_two_seeded_models_are_bitwise_equal_and_another_seed_differs(name):
    a, b, c = small_model(name, seed=0), small_model(name, seed=0), small_model(name, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", list_models())
def test_no_lazy_parameters_or_modules_are_left(name):
    model = small_model(name)
    assert not any(is_lazy(t) for t in [*model.parameters(), *model.buffers()])
    assert not any(isinstance(m, LazyModuleMixin) for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_pickles_and_runs_channels_last_and_under_autocast(name):
    model = small_model(name).eval()
    X = small_batch(name)
    with torch.no_grad():
        expected = model(X)
        assert torch.equal(pickle.loads(pickle.dumps(model))(X), expected)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(X).shape == (2, 10)
        model = model.to(memory_format=torch.channels_last)
        out = model(X.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_torch_compile_captures_one_graph_forward_and_backward(name):
    # fullgraph: no Python-side shape logic may break the graph. aot_eager traces forward and
    # backward as inductor would, without its C++ code generation (~20 s a model on CPU).
    model, X = small_model(name).eval(), small_batch(name)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(X)
    torch.testing.assert_close(out, model(X), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ---- the notebook's printed outputs, exactly ----------------------------------------------

def test_lenet_layer_summary_as_printed():
    assert layer_summary(lenet(), (1, 1, 28, 28)) == [
        ("Conv2d", (1, 6, 28, 28)),
        ("Sigmoid", (1, 6, 28, 28)),
        ("AvgPool2d", (1, 6, 14, 14)),
        ("Conv2d", (1, 16, 10, 10)),
        ("Sigmoid", (1, 16, 10, 10)),
        ("AvgPool2d", (1, 16, 5, 5)),
        ("Flatten", (1, 400)),
        ("Linear", (1, 120)),
        ("Sigmoid", (1, 120)),
        ("Linear", (1, 84)),
        ("Sigmoid", (1, 84)),
        ("Linear", (1, 10)),
    ]


def test_full_vgg11_layer_summary_as_printed():
    assert VGG11_ARCH == ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    assert layer_summary(vgg(arch=VGG11_ARCH), (1, 1, 224, 224)) == [
        ("Sequential", (1, 64, 112, 112)),
        ("Sequential", (1, 128, 56, 56)),
        ("Sequential", (1, 256, 28, 28)),
        ("Sequential", (1, 512, 14, 14)),
        ("Sequential", (1, 512, 7, 7)),
        ("Flatten", (1, 25088)),
        ("Linear", (1, 4096)),
        ("ReLU", (1, 4096)),
        ("Dropout", (1, 4096)),
        ("Linear", (1, 4096)),
        ("ReLU", (1, 4096)),
        ("Dropout", (1, 4096)),
        ("Linear", (1, 10)),
    ]


def test_resnet18_layer_summary_as_printed():
    assert layer_summary(resnet18(), (1, 1, 96, 96)) == [
        ("Sequential", (1, 64, 24, 24)),
        ("Sequential", (1, 64, 24, 24)),
        ("Sequential", (1, 128, 12, 12)),
        ("Sequential", (1, 256, 6, 6)),
        ("Sequential", (1, 512, 3, 3)),
        ("Sequential", (1, 10)),
    ]


def test_layer_summary_restores_train_mode():
    model = small_model("resnet18")
    layer_summary(model, (1, 1, 32, 32))
    assert all(m.training for m in model.modules())


def test_block_shapes_as_printed():
    X = torch.randn(4, 3, 6, 6)
    assert Residual(3)(X).shape == (4, 3, 6, 6)
    assert Residual(6, use_1x1conv=True, strides=2)(X).shape == (4, 6, 3, 3)
    blk = ResNeXtBlock(32, 16, 1)
    assert blk(torch.randn(4, 32, 96, 96)).shape == (4, 32, 96, 96)
    assert blk.conv2.groups == 2  # the seed's `groups` is channels per group: 32 // 16 groups


def test_resnext_block_rejects_a_width_its_groups_do_not_divide():
    with pytest.raises(ValueError, match="not a multiple of groups=16"):
        ResNeXtBlock(24, 16, 1)


# ---- summary_table -------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_summary_table_parameter_total_is_the_models(name):
    model = small_model(name)
    rows = summary_table(model, (1, 1, *SMALL_INPUT[name]))
    assert rows[-1]["layer"] == "total"
    assert rows[-1]["output_shape"] == (1, 10)
    assert rows[-1]["params"] == sum(p.numel() for p in model.parameters())
    assert rows[-1]["flops"] == sum(r["flops"] for r in rows[:-1]) > 0


def test_summary_table_lenet_rows_and_flops_by_hand():
    # Multiply-adds x 2: conv 2*Cout*Hout*Wout*Cin*kh*kw, linear 2*in*out; the rest counts 0.
    conv1 = 2 * 6 * 28 * 28 * 1 * 5 * 5      # 235,200
    conv2 = 2 * 16 * 10 * 10 * 6 * 5 * 5     # 480,000
    fcs = 2 * (400 * 120 + 120 * 84 + 84 * 10)  # 117,840
    rows = summary_table(small_model("lenet"), (1, 1, 28, 28))
    assert [r["flops"] for r in rows[:-1]] == [conv1, 0, 0, conv2, 0, 0, 0, 2 * 400 * 120, 0,
                                                2 * 120 * 84, 0, 2 * 84 * 10]
    assert rows[-1]["flops"] == conv1 + conv2 + fcs == 833_040
    assert rows[0] == {"layer": "0", "type": "Conv2d", "output_shape": (1, 6, 28, 28),
                       "params": 6 * 25 + 6, "flops": conv1}
    assert rows[-1]["params"] == 61_706


def test_summary_table_flops_scale_with_the_batch():
    model = small_model("lenet")
    assert summary_table(model, (3, 1, 28, 28))[-1]["flops"] == 3 * 833_040


# ---- errors a user sees --------------------------------------------------------------------

def test_unknown_model_lists_the_known_ones_and_suggests_the_closest():
    with pytest.raises(UserError) as e:
        create_model("resnet19")
    assert str(e.value) == ("unknown model 'resnet19' (known: lenet, vgg, resnet18, resnext); "
                            "did you mean 'resnet18'?")


def test_unknown_model_args_name_the_model_and_what_it_accepts():
    with pytest.raises(UserError) as e:
        create_model("lenet", arch=[[1, 16]])
    assert str(e.value) == "model 'lenet' got unknown argument 'arch' (accepted: none)"
    with pytest.raises(UserError) as e:
        create_model("vgg", input_size=(32, 32), arc=[[1, 16]])
    assert str(e.value) == "model 'vgg' got unknown argument 'arc' (accepted: arch); did you mean 'arch'?"
    with pytest.raises(UserError) as e:
        create_model("resnext", input_size=(32, 32), cardinality=32, width=4)
    assert str(e.value) == ("model 'resnext' got unknown arguments 'cardinality', 'width' "
                            "(accepted: groups, bot_mul)")


def test_bad_model_arg_values_and_input_sizes_are_user_errors():
    with pytest.raises(UserError, match=r"^model 'vgg': arch must be a non-empty list of "
                                        r"\[num_convs, out_channels\] pairs"):
        create_model("vgg", input_size=(32, 32), arch=[[1, "16"]])
    with pytest.raises(UserError, match=r"^model 'resnext': groups=24 \(channels per group\) must divide"):
        create_model("resnext", input_size=(32, 32), groups=24)
    with pytest.raises(UserError, match=r"^model 'vgg' cannot take input of shape \(2, 1, 16, 16\): "):
        create_model("vgg", input_size=(16, 16))


def test_model_args_reach_the_model():
    torch.manual_seed(0)
    model = create_model("vgg", num_classes=3, in_channels=3, input_size=(32, 32), arch=[[1, 8], [1, 8],
                                                                                      [1, 8], [1, 8], [1, 8]])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert model[0][0].out_channels == 8 and model[0][0].in_channels == 3
    torch.manual_seed(0)
    assert create_model("resnext", input_size=(32, 32), groups=32, bot_mul=2).b5[0].conv2.groups == 32


# ---- the load-time probe (harness.models.probe_model) ----------------------------------------

def _real_leaf_outputs(model: torch.nn.Module, shape) -> int:
    """Elements of every leaf module's output in one real training-mode forward pass."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if next(m.children(), None) is None]
    model(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("name", list_models())
def test_probe_finds_what_a_real_batch_does_without_computing_it(name):
    shape = (3, 1, *SMALL_INPUT[name])
    state = torch.get_rng_state()
    probe = probe_model(name, shape)
    assert torch.equal(torch.get_rng_state(), state)  # the probe draws nothing from the caller's RNG
    model = small_model(name)
    assert probe.params == sum(p.numel() for p in model.parameters())
    assert probe.activations == _real_leaf_outputs(model.train(), shape)
    has_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert (probe.norm_values is not None) == has_norm


def test_probe_separates_build_errors_from_input_errors():
    with pytest.raises(ModelBuildError) as e:
        probe_model("vgg", (2, 1, 64, 64), arch="foo")
    assert isinstance(e.value.cause, UserError) and "arch must be a non-empty list" in str(e.value)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        probe_model("vgg", (2, 1, 16, 16))
    assert probe_model("resnet18", (1, 1, 8, 8)).norm_values == 1  # the train kind refuses this
    assert probe_model("resnet18", (2, 1, 8, 8)).norm_values == 2


def test_probe_of_a_gigantic_input_costs_no_memory():
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    probe = probe_model("lenet", (128, 1, 20_000, 20_000))  # 191 GiB of input, 4.8e10 weights
    assert probe.activations > 128 * 20_000 * 20_000 and probe.params == 16 * 4_998 * 4_998 * 120 + 61_706 - 400 * 120
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 2**20  # under 1 GiB more


def test_probe_falls_back_to_the_meta_device_where_an_empty_batch_trips(monkeypatch):
    """`x.reshape(x.shape[0], -1)` cannot reshape zero images; a whole batch on the meta device can."""
    from harness.models import MODELS

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.LazyConv2d(4, 3), torch.nn.LazyLinear(10)

        def forward(self, x):
            x = self.conv(x)
            return self.fc(x.reshape(x.shape[0], -1))

    def flat(num_classes: int = 10):
        return Flat()

    monkeypatch.setitem(MODELS._entries, "flat", flat)
    with pytest.raises(RuntimeError):  # the empty batch alone would be refused ...
        Flat()(torch.zeros(0, 1, 10, 10))
    probe = probe_model("flat", (5, 1, 10, 10))  # ... the probe is not
    assert (probe.activations, probe.params) == (5 * (4 * 8 * 8 + 10), 4 * 9 + 4 + 256 * 10 + 10)
    with pytest.raises(RuntimeError):
        probe_model("flat", (5, 1, 2, 2))  # a real error stays one


def test_probe_builds_on_the_cpu_a_factory_that_cannot_run_on_the_meta_device(monkeypatch):
    from harness.models import MODELS

    def counted(num_classes: int = 10, width: int = 4):
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        n = int(torch.tensor([width]).sum().item())  # .item() of a meta tensor raises
        return torch.nn.Sequential(torch.nn.LazyConv2d(n, 3), torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    monkeypatch.setitem(MODELS._entries, "counted", counted)
    assert probe_model("counted", (2, 1, 5, 5)).params == 4 * 9 + 4 + 4 * 9 * 10 + 10
    with pytest.raises(ModelBuildError, match="width must be positive, got 0"):
        probe_model("counted", (2, 1, 5, 5), width=0)


# ---- the size from the arguments alone (harness.models.estimate_size) -----------------------

SIZE_CASES = [("lenet", (3, 1, 28, 28), {}), ("lenet", (2, 1, 36, 44), {}), ("vgg", (2, 1, 32, 32), {}),
              ("vgg", (2, 3, 64, 48), {"arch": [[1, 8], [2, 16]]}), ("resnet18", (2, 1, 32, 32), {}),
              ("resnet18", (2, 1, 40, 56), {}), ("resnext", (2, 1, 32, 32), {}),
              ("resnext", (2, 1, 40, 56), {"groups": 32, "bot_mul": 4})]


@pytest.mark.parametrize("name, shape, args", SIZE_CASES, ids=[f"{n}-{s}-{a}" for n, s, a in SIZE_CASES])
def test_the_size_from_the_arguments_is_the_built_models(name, shape, args):
    """Arithmetic over the layer shapes, nothing built, gives the built model's parameters, its
    leaf outputs for the batch (what the probe counts) and its convolutions and linear layers."""
    from harness.models import estimate_size

    size = estimate_size(name, shape, **args)
    torch.manual_seed(0)
    model = create_model(name, in_channels=shape[1], input_size=shape[2:], **args)
    assert size.params == sum(p.numel() for p in model.parameters())
    assert size.activations == _real_leaf_outputs(model.train(), shape)
    assert size.layers == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())


def test_every_registered_model_declares_its_size():
    from harness.models.size import SIZES

    assert sorted(SIZES) == sorted(list_models())


def test_a_model_too_deep_or_too_wide_is_sized_without_building_it(monkeypatch):
    """A million layers, or a trillion parameters: counted, never built (the factory is not called)."""
    from harness.models import MAX_LAYERS, MODELS, estimate_size

    monkeypatch.setitem(MODELS._entries, "vgg", lambda **kw: pytest.fail("the model was built"))
    deep = estimate_size("vgg", (2, 1, 32, 32), arch=[[1_000_000, 16]])
    assert deep.layers == 1_000_003 > MAX_LAYERS and deep.params is None
    wide = estimate_size("vgg", (2, 1, 32, 32), arch=[[2, 1_000_000]])
    assert wide.params > 10**13
    assert estimate_size("vgg", (2, 1, 32, 32), arch="foo") is None  # the factory's own check says why
    assert estimate_size("resnext", (2, 1, 32, 32), groups=True) is None


def test_resnext_refuses_arguments_that_are_not_numbers():
    with pytest.raises(UserError, match=r"^model 'resnext': groups must be a positive integer and bot_mul a "
                                        r"positive number; got groups=True, bot_mul=1.0"):
        create_model("resnext", input_size=(32, 32), groups=True)


def test_summary_of_an_input_too_large_for_memory_is_refused_before_building():
    from conftest import run_cli

    proc = run_cli("summary", "lenet", "--input", "1,1,100000,100000")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --input 1,1,100000,100000: model lenet on this input needs about 5.3 TiB "
                                  "(the batch, every layer's output and the weights, fp32), more than this machine's ")
    assert proc.stderr.rstrip().endswith("of memory; give a smaller N or H,W")
