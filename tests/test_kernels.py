"""Contracts of harness.kernels: the book's printed outputs, every variant against its family's
float64 reference, case validation, cost models, and the 7.2 kernel-learning experiment."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from harness.kernels import (
    KERNELS,
    corr2d,
    corr2d_multi_in,
    corr2d_multi_in_out,
    corr2d_multi_in_out_1x1,
    learn_edge_kernel,
    pool2d,
)
from harness.kernels.channels import Conv1x1Case, MultiCase
from harness.kernels.corr2d import Corr2dCase
from harness.kernels.pool import PoolCase

T = torch.tensor


# ---- the seed notebook's printed outputs, exactly -------------------------------------------

def edge_image():
    X = torch.ones((6, 8))
    X[:, 2:6] = 0
    return X


def test_corr2d_book_example():
    X = T([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = T([[0.0, 1.0], [2.0, 3.0]])
    assert torch.equal(corr2d(X, K), T([[19.0, 25.0], [37.0, 43.0]]))


def test_corr2d_detects_vertical_edges_only():
    X, K = edge_image(), T([[1.0, -1.0]])
    assert torch.equal(corr2d(X, K), T([[0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0]] * 6))
    # X.t() is 8x6 and K 1x2, so the output is 8x5; the notebook shows 9 rows, a transcription
    # error (Out[8]).
    assert torch.equal(corr2d(X.t(), K), torch.zeros((8, 5)))


def book_multi_in():
    X = T([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
           [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
    K = T([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    return X, K


def test_corr2d_multi_in_book_example():
    X, K = book_multi_in()
    assert torch.equal(corr2d_multi_in(X, K), T([[56.0, 72.0], [104.0, 120.0]]))


def test_corr2d_multi_in_out_book_example():
    X, K = book_multi_in()
    K = torch.stack((K, K + 1, K + 2), 0)
    assert K.shape == torch.Size([3, 2, 2, 2])
    expected = T([[[56.0, 72.0], [104.0, 120.0]],
                  [[76.0, 100.0], [148.0, 172.0]],
                  [[96.0, 128.0], [192.0, 224.0]]])
    assert torch.equal(corr2d_multi_in_out(X, K), expected)


def test_1x1_is_matmul_as_the_book_asserts():
    gen = torch.Generator().manual_seed(0)
    X = torch.normal(0, 1, (3, 3, 3), generator=gen)
    K = torch.normal(0, 1, (2, 3, 1, 1), generator=gen)
    Y1 = corr2d_multi_in_out_1x1(X, K)
    Y2 = corr2d_multi_in_out(X, K)
    assert float(torch.abs(Y1 - Y2).sum()) < 1e-6


def test_pool2d_book_examples():
    X = T([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    assert torch.equal(pool2d(X, (2, 2)), T([[4.0, 5.0], [7.0, 8.0]]))
    assert torch.equal(pool2d(X, (2, 2), 'avg'), T([[2.0, 3.0], [5.0, 6.0]]))


def test_seed_functions_keep_dtype():
    # the one deliberate fix to the book's code: no silent float32 output
    X, K = book_multi_in()
    assert corr2d(X[0].double(), K[0].double()).dtype == torch.float64
    assert pool2d(X[0].double(), (2, 2)).dtype == torch.float64


ARANGE = torch.arange(16, dtype=torch.float32).reshape((1, 4, 4))


@pytest.mark.parametrize("variant", KERNELS.get("pool2d").variants)
@pytest.mark.parametrize(
    "fields, X, expected",
    [  # the notebook's nn.MaxPool2d examples, In [28], [29], [31]
        (dict(pool=(3, 3), padding=(1, 1), stride=(2, 2)), ARANGE, [[[5.0, 7.0], [13.0, 15.0]]]),
        (dict(pool=(2, 3), stride=(2, 3), padding=(0, 1)), ARANGE, [[[5.0, 7.0], [13.0, 15.0]]]),
        (dict(pool=(3, 3), padding=(1, 1), stride=(2, 2), channels=2),
         torch.cat((ARANGE, ARANGE + 1), 0),
         [[[5.0, 7.0], [13.0, 15.0]], [[6.0, 8.0], [14.0, 16.0]]]),
    ],
)
def test_pool2d_family_book_max_pool_examples(variant, fields, X, expected):
    fam = KERNELS.get("pool2d")
    case = fam.case(input=(4, 4), **fields)
    assert torch.equal(fam.variants[variant].fn(case, X), T(expected))


# ---- every variant of every family against the float64 reference ----------------------------

def _int(gen, lo, hi):
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def _pair(gen, lo, hi):
    return (_int(gen, lo, hi), _int(gen, lo, hi))


def _window_fields(gen):
    return dict(input=_pair(gen, 1, 9), kernel=_pair(gen, 1, 5), padding=_pair(gen, 0, 2),
                stride=_pair(gen, 1, 3))


SAMPLERS = {  # random case fields per family; invalid draws are redrawn
    "corr2d": _window_fields,
    "corr2d_multi_in_out": lambda g: dict(_window_fields(g), channels_in=_int(g, 1, 3),
                                          channels_out=_int(g, 1, 3)),
    "conv1x1": lambda g: dict(channels_in=_int(g, 1, 4), channels_out=_int(g, 1, 4),
                              input=_pair(g, 1, 6)),
    "pool2d": lambda g: dict(input=_pair(g, 1, 8), channels=_int(g, 1, 3), pool=_pair(g, 1, 4),
                             stride=None if _int(g, 0, 1) else _pair(g, 1, 3),
                             padding=_pair(g, 0, 2), mode=("max", "avg")[_int(g, 0, 1)]),
}

FIXED = {  # edge cases worth keeping whatever the random draws are
    "corr2d": [dict(input=(3, 3), kernel=(3, 3)),  # a single output pixel
               dict(input=(2, 2), kernel=(4, 4), padding=(1, 1)),  # fits only once padded
               dict(input=(5, 7), kernel=(2, 3), padding=(1, 2), stride=(2, 3))],
    "corr2d_multi_in_out": [dict(channels_in=2, channels_out=3, input=(5, 6), kernel=(3, 2),
                                 padding=(1, 0), stride=(2, 1))],
    "conv1x1": [dict(channels_in=3, channels_out=2, input=(3, 3))],
    "pool2d": [dict(input=(5, 5), pool=(3, 3), padding=(1, 1), mode="avg"),  # padded zeros count
               dict(input=(4, 6), pool=(2, 2), stride=(1, 3), channels=2),  # overlap and gaps
               dict(input=(3, 4), pool=(2, 3), padding=(1, 1), stride=(1, 1))],
}


def cases(family, n_random=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = [family.case(**f) for f in FIXED[family.name]]
    while len(out) < len(FIXED[family.name]) + n_random:
        try:
            out.append(family.case(**SAMPLERS[family.name](gen)))
        except ValidationError:
            pass
    return out


VARIANTS = [(f, v) for f in KERNELS for v in KERNELS.get(f).variants]


def test_every_family_has_test_cases():
    assert set(KERNELS) == set(SAMPLERS) == set(FIXED)


def check_variant(family_name, variant, dtype, device, atol, rtol):
    fam = KERNELS.get(family_name)
    fn = fam.variants[variant].fn
    for case in cases(fam):
        inputs = fam.make_inputs(case, torch.Generator().manual_seed(1), dtype, device)
        before = [x.clone() for x in inputs]
        out = fn(case, *inputs)
        ref = fam.reference(case, *inputs)
        assert ref.dtype == torch.float64 and ref.device.type == "cpu", case
        assert out.dtype == dtype and out.device == inputs[0].device, case
        assert out.shape == ref.shape, case
        torch.testing.assert_close(out.double().cpu(), ref, atol=atol, rtol=rtol,
                                   msg=lambda m: f"{family_name}.{variant} {case.label()}: {m}")
        assert all(torch.equal(a, b) for a, b in zip(inputs, before)), "inputs were modified"


@pytest.mark.parametrize("family, variant", VARIANTS)
def test_variant_matches_reference_float32(family, variant):
    check_variant(family, variant, torch.float32, torch.device("cpu"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, variant", VARIANTS)
def test_variant_matches_reference_float64(family, variant):
    check_variant(family, variant, torch.float64, torch.device("cpu"), atol=1e-10, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("family, variant", VARIANTS)
def test_variant_matches_reference_on_cuda(family, variant):
    # TF32 would loosen float32 matmuls; float64 checks the indexing exactly on the device
    check_variant(family, variant, torch.float64, torch.device("cuda"), atol=1e-10, rtol=0)


def test_only_loop_variants_are_python_loops():
    for f in KERNELS:
        for name, v in KERNELS.get(f).variants.items():
            assert v.python_loop == (name == "loop"), (f, name)


# ---- the references themselves, against the book's code on explicitly padded inputs ----------
# The book's functions have stride 1 and no padding: pad by hand, then keep every s-th output.

def _ref_vs(family_name, independent):
    fam = KERNELS.get(family_name)
    for case in cases(fam, n_random=3, seed=2):
        inputs = fam.make_inputs(case, torch.Generator().manual_seed(3), torch.float64,
                                 torch.device("cpu"))
        torch.testing.assert_close(fam.reference(case, *inputs), independent(case, *inputs),
                                   atol=1e-12, rtol=0)


def _pad(X, padding, value=0.0):
    return F.pad(X, (padding[1], padding[1], padding[0], padding[0]), value=value)


def test_corr2d_reference_is_the_books_corr2d():
    _ref_vs("corr2d", lambda c, X, K: corr2d(_pad(X, c.padding), K)[::c.stride[0], ::c.stride[1]])


def test_multi_reference_is_the_books_corr2d_multi_in_out():
    _ref_vs("corr2d_multi_in_out", lambda c, X, K: corr2d_multi_in_out(
        _pad(X, c.padding), K)[:, ::c.stride[0], ::c.stride[1]])


def test_conv1x1_reference_is_a_channel_sum():
    _ref_vs("conv1x1", lambda c, X, K: torch.einsum("oc,chw->ohw", K[:, :, 0, 0], X))


def test_pool_reference_is_the_books_pool2d():
    def book(c, X):
        Xp = _pad(X, c.padding, float("-inf") if c.mode == "max" else 0.0)
        return torch.stack([pool2d(x, c.pool, c.mode)[::c.step[0], ::c.step[1]] for x in Xp])

    _ref_vs("pool2d", book)


# ---- case validation ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "case, fields, reason",
    [
        (Corr2dCase, dict(input=(3, 3), kernel=(5, 5)),
         "kernel 5x5 is larger than the padded input 3x3"),
        (Corr2dCase, dict(input=(3, 3), kernel=(2, 6), padding=(0, 1)),
         "kernel 2x6 is larger than the padded input 3x5"),
        (MultiCase, dict(channels_in=1, channels_out=1, input=(2, 2), kernel=(3, 1)),
         "kernel 3x1 is larger than the padded input 2x2"),
        (PoolCase, dict(input=(2, 2), pool=(3, 3)), "pool 3x3 is larger than the padded input 2x2"),
        (PoolCase, dict(input=(5, 5), pool=(3, 3), padding=(2, 0)),
         "padding 2x0 is more than half the pool 3x3"),
        (Corr2dCase, dict(input=(0, 3), kernel=(1, 1)), "greater than 0"),
        (Corr2dCase, dict(input=(3, 3), kernel=(1, 1), stride=(1, 0)), "greater than 0"),
        (Corr2dCase, dict(input=(3, 3), kernel=(1, 1), padding=(-1, 0)),
         "greater than or equal to 0"),
        (MultiCase, dict(channels_in=0, channels_out=1, input=(3, 3), kernel=(1, 1)),
         "greater than 0"),
        (Conv1x1Case, dict(channels_in=1, channels_out=-2, input=(3, 3)), "greater than 0"),
        (PoolCase, dict(input=(3, 3), pool=(2, 2), channels=0), "greater than 0"),
        (PoolCase, dict(input=(3, 3), pool=(2, 2), mode="min"), "'max' or 'avg'"),
        (Corr2dCase, dict(input=(3, 3), kernel=(1, 1), strides=(1, 1)), "Extra inputs"),
    ],
)
def test_invalid_cases_are_refused(case, fields, reason):
    with pytest.raises(ValidationError, match=reason):
        case(**fields)


def test_yaml_lists_validate_to_tuples():
    case = PoolCase.model_validate({"input": [4, 4], "pool": [3, 3], "padding": [1, 1],
                                    "stride": [2, 2]})
    assert case.input == (4, 4) and case.stride == (2, 2) and case.step == (2, 2)
    assert Corr2dCase.model_validate({"input": [3, 3], "kernel": [5, 5], "padding": [1, 1]}).output \
        == (1, 1)


# ---- cost models and labels, by hand -------------------------------------------------------

def test_corr2d_costs_and_label():
    case = Corr2dCase(input=(6, 8), kernel=(3, 3), padding=(1, 1), stride=(2, 2))
    # output (6+2-3)//2+1 = 3 by (8+2-3)//2+1 = 4: 12 pixels of 9 multiply-adds
    assert (case.flops(), case.loop_iters()) == (2 * 12 * 9, 12)
    assert case.label() == "in=6x8 k=3x3 pad=1x1 s=2x2"
    assert Corr2dCase(input=(32, 32), kernel=(3, 3)).label() == "in=32x32 k=3x3"


def test_multi_costs_and_label():
    case = MultiCase(channels_in=2, channels_out=3, input=(4, 4), kernel=(2, 2))
    # 3x3 outputs, 4 multiply-adds each, for each of 2*3 channel pairs
    assert (case.flops(), case.loop_iters()) == (2 * 6 * 9 * 4, 6 * 9)
    assert case.label() == "ci=2 co=3 in=4x4 k=2x2"


def test_conv1x1_costs_and_label():
    case = Conv1x1Case(channels_in=3, channels_out=2, input=(3, 3))
    assert (case.flops(), case.loop_iters()) == (2 * 6 * 9, 6 * 9)
    assert case.label() == "ci=3 co=2 in=3x3"


def test_pool_costs_and_label():
    case = PoolCase(input=(4, 4), channels=2, pool=(3, 3), padding=(1, 1), stride=(2, 2),
                    mode="avg")
    # 2 channels of 2x2 outputs, one op per element of a 3x3 window
    assert (case.flops(), case.loop_iters()) == (2 * 4 * 9, 2 * 4)
    assert case.label() == "in=4x4 pool=3x3 pad=1x1 s=2x2 c=2 mode=avg"
    # stride=None means stride=pool: the same computation, the same label
    assert PoolCase(input=(4, 4), pool=(2, 2)).label() == \
        PoolCase(input=(4, 4), pool=(2, 2), stride=(2, 2)).label() == "in=4x4 pool=2x2"


# ---- the book's 7.2 kernel-learning experiment ----------------------------------------------

def test_learn_edge_kernel_converges_like_the_book():
    result = learn_edge_kernel(seed=0)
    losses, kernel = result["losses"], result["kernel"]
    assert len(losses) == 10
    assert all(a > b for a, b in zip(losses, losses[1:]))
    assert len(kernel) == 2
    assert abs(kernel[0] - 1) < 0.15 and abs(kernel[1] + 1) < 0.15


def test_learn_edge_kernel_is_deterministic_per_seed():
    assert learn_edge_kernel(seed=0) == learn_edge_kernel(seed=0)
    assert learn_edge_kernel(seed=0) != learn_edge_kernel(seed=1)


def test_learn_edge_kernel_leaves_global_rng_alone():
    state = torch.get_rng_state()
    learn_edge_kernel(seed=0)
    assert torch.equal(torch.get_rng_state(), state)


class _Ctx:
    """The TaskContext a learn_kernel task uses: logged steps only."""

    def __init__(self):
        self.steps = []

    def log(self, metrics, step):
        self.steps.append((step, metrics["loss"]))


def test_learn_kernel_that_diverges_is_a_diverged_row_saying_where_and_what_to_do():

    from harness.kernels.bench import _learn
    from harness.kernels.kind import LearnKernelSpec

    ctx = _Ctx()
    row = _learn(LearnKernelSpec(name="l", kind="learn_kernel", lr=1e6), "cpu", ctx)
    assert row["status"] == "diverged"
    assert row["error"] == ("loss became inf at iteration 4 of 10 (lr 1e+06): gradient descent diverged; "
                            "try a smaller lr (the book uses 0.03)")
    assert [s for s, _ in ctx.steps] == list(range(1, 11)) and math.isinf(ctx.steps[3][1])
    assert _learn(LearnKernelSpec(name="l", kind="learn_kernel"), "cpu", _Ctx())["status"] == "ok"


def test_learn_kernel_diverging_in_the_last_update_is_caught_by_its_weights():
    from harness.kernels.bench import _learn
    from harness.kernels.kind import LearnKernelSpec

    out = learn_edge_kernel(lr=1e38, iterations=1)
    assert math.isfinite(out["losses"][0]) and not all(map(math.isfinite, out["kernel"]))  # finite loss, inf weights
    row = _learn(LearnKernelSpec(name="l", kind="learn_kernel", lr=1e38, iterations=1), "cpu", _Ctx())
    assert row["status"] == "diverged" and "at iteration 1 of 1" in row["error"]


def test_learn_kernel_divergence_fails_the_run(tmp_path):
    import csv

    from conftest import run_cli, write_suite

    write_suite(tmp_path / "l.yaml", "suite: l\nexperiments:\n  - {name: hot, kind: learn_kernel, lr: 1e6}\n"
                "  - {name: book, kind: learn_kernel}\n")
    out = tmp_path / "results"
    proc = run_cli("run", "l.yaml", "--no-tracking", "--device", "cpu", "--out", out, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    (run_dir,) = (out / "l").iterdir()
    rows = {r["experiment"]: r for r in csv.DictReader((run_dir / "results.csv").open())}
    assert rows["hot"]["status"] == "diverged" and "try a smaller lr" in rows["hot"]["error"]
    assert rows["book"]["status"] == "ok"
    assert "1 failed or diverged" in proc.stdout


# ---- the load-time memory estimate --------------------------------------------------------

@pytest.mark.parametrize("family, case", [
    ("corr2d", {"input": (7, 9), "kernel": (2, 3), "padding": (1, 0), "stride": (2, 1)}),
    ("corr2d_multi_in_out", {"input": (6, 5), "kernel": (3, 2), "channels_in": 3, "channels_out": 4}),
    ("conv1x1", {"input": (5, 4), "channels_in": 3, "channels_out": 2}),
    ("pool2d", {"input": (7, 6), "pool": (3, 2), "channels": 3, "padding": (1, 1), "stride": (2, 2)}),
])
def test_tensor_elements_are_the_inputs_and_the_output(family, case):
    fam = KERNELS.get(family)
    c = fam.case(**case)
    inputs = fam.make_inputs(c, torch.Generator().manual_seed(0), torch.float32, torch.device("cpu"))
    assert c.tensor_elements() == sum(x.numel() for x in inputs) + fam.reference(c, *inputs).numel()
