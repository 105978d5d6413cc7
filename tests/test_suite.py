"""Suite validation as a user meets it: a real `python -m harness` subprocess, the exact message,
exit code 2, and nothing written (no results directory, no MLflow store)."""
from __future__ import annotations

import os
import sys
import time

import pytest
from conftest import REPO, run_cli, write_suite

from harness.core.envinfo import usable_cpus
from harness.core.errors import UserError
from harness.suite import KernelSpec, load_suite
from harness.suite.loader import MAX_EXPERIMENTS
from harness.suite.yamlfile import MAX_FILE_BYTES, read_yaml

GOOD_KERNEL = """
  - name: c
    kind: kernel
    kernel: corr2d
    variants: [loop, vectorized, native]
    sizes: {input: [[6, 8]], kernel: [[1, 2]]}
"""

BAD_SUITES = {
    "unknown_top_key": ("suite: s\nexperimens: []\n",
                        ["bad.yaml: experimens: unknown field 'experimens' (known: suite, description, note, defaults, "
                         "experiments, matrix, overrides, source); did you mean 'experiments'?"]),
    "note_not_text": ("suite: s\nnote: [a, b]\nexperiments:\n" + GOOD_KERNEL,
                      ["bad.yaml: note: Input should be a valid string"]),
    "unknown_experiment_key": ("suite: s\nexperiments:\n" + GOOD_KERNEL + "    sized: 3\n",
                               ["bad.yaml: experiments[0].sized: unknown field 'sized'", "did you mean 'sizes'?"]),
    "unknown_kernel": ("suite: s\nexperiments:\n" + GOOD_KERNEL.replace("kernel: corr2d", "kernel: corr2D"),
                       ["bad.yaml: experiments[0].kernel: unknown kernel 'corr2D' (known: corr2d, "
                        "corr2d_multi_in_out, conv1x1, pool2d); did you mean 'corr2d'?"]),
    "unknown_variant": ("suite: s\nexperiments:\n" + GOOD_KERNEL.replace("vectorized", "vectorised"),
                        ["bad.yaml: experiments[0].variants[1]: unknown variant of kernel corr2d: 'vectorised' "
                         "(known: loop, vectorized, native); did you mean 'vectorized'?"]),
    "baseline_not_a_variant": ("suite: s\nexperiments:\n" + GOOD_KERNEL + "    baseline: matmul\n",
                               ["bad.yaml: experiments[0].baseline: 'matmul' is not one of this experiment's "
                                "variants (loop, vectorized, native)"]),
    "kernel_larger_than_input": ("suite: s\nexperiments:\n" + GOOD_KERNEL.replace("[[1, 2]]", "[[7, 2]]"),
                                 ['bad.yaml: experiments[0].sizes: {"input": [6, 8], "kernel": [7, 2]}: '
                                  "kernel 7x2 is larger than the padded input 6x8"]),
    "non_positive_size": ("suite: s\nexperiments:\n" + GOOD_KERNEL.replace("[[6, 8]]", "[[0, 8]]"),
                          ['bad.yaml: experiments[0].sizes: {"input": [0, 8], "kernel": [1, 2]}: input[0]: '
                           "Input should be greater than 0"]),
    "unknown_size_parameter": ("suite: s\nexperiments:\n" + GOOD_KERNEL.replace("kernel: [[1, 2]]", "kernal: [[1, 2]]"),
                               ["bad.yaml: experiments[0].sizes.kernal: unknown size parameter of kernel corr2d: "
                                "'kernal'", "did you mean 'kernel'?"]),
    "duplicate_names": ("suite: s\nexperiments:\n" + GOOD_KERNEL + GOOD_KERNEL,
                        ["bad.yaml: experiments[1].name: duplicate experiment name 'c' (first used by experiments[0])"]),
    "unknown_kind": ("suite: s\nexperiments:\n  - {name: a, kind: trian}\n",
                     ["bad.yaml: experiments[0].kind: unknown kind 'trian' (known: kernel, learn_kernel, train); "
                      "did you mean 'train'?"]),
    "wrong_type": ("suite: s\nexperiments:\n" + GOOD_KERNEL + "    min_run_time_s: fast\n",
                   ["bad.yaml: experiments[0].min_run_time_s: Input should be a valid number"]),
    "unknown_default": ("suite: s\ndefaults: {batchsize: 3}\nexperiments:\n" + GOOD_KERNEL,
                        ["bad.yaml: defaults.batchsize: not a field of any experiment in this suite (fields: "]),
    "misspelt_default_and_axis": ("suite: s\ndefaults: {epoch: 3}\nmatrix: {sed: [1, 2]}\nexperiments:\n"
                                  "  - {name: t, kind: train, model: lenet, dataset: fashion_mnist_sample}\n",
                                  ["bad.yaml: defaults.epoch: not a field of any experiment in this suite; did you "
                                   "mean 'epochs'?", "bad.yaml: matrix.sed: not a field of any experiment in this "
                                   "suite; did you mean 'seed'?"]),
    "empty_file": ("", ["bad.yaml: the file is empty; a suite needs `suite:` and `experiments:`"]),
    "not_a_mapping": ("- a\n- b\n", ["bad.yaml: a suite is a YAML mapping with `suite:` and `experiments:`, not a list"]),
    "not_yaml": ("suite: [unclosed\n", ["bad.yaml:2:1: not valid YAML"]),
    "object_constructing_tag": ("!!python/object/apply:os.system ['touch pwned']\n",
                                ["bad.yaml:1:1: YAML tags that construct objects are not allowed"]),
    "no_experiments": ("suite: s\nexperiments: []\n",
                       ["bad.yaml: experiments: List should have at least 1 item after validation"]),
    # ---- limits: the YAML itself
    "duplicate_key_nested": ("suite: s\nexperiments:\n  - name: l\n    kind: learn_kernel\n    lr: 0.1\n"
                             "    iterations: 3\n    lr: 0.2\n",
                             ["bad.yaml:7:5: duplicate key 'lr' (first at line 5); a key may appear once per mapping"]),
    "duplicate_key_top": ("suite: s\nexperiments:\n" + GOOD_KERNEL + "suite: t\n",
                          ["bad.yaml:9:1: duplicate key 'suite' (first at line 1)"]),
    "billion_laughs": ("suite: s\nexperiments:\n" + GOOD_KERNEL + 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                       + "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10)),
                       ["bad.yaml:14:5: expands to more than 100,000 values through its aliases (*name); "
                        "a suite may have at most 100,000"]),
    "recursive_alias": ("suite: s\nexperiments: &e [*e]\n",
                        ["bad.yaml:2:14: a recursive alias (a value that contains itself) is not allowed"]),
    "too_deep": ("suite: " + "[" * 40 + "]" * 40 + "\n", ["bad.yaml:1:39: nested deeper than 32 levels"]),
    # ---- limits: numbers
    "huge_matrix": ("suite: s\nmatrix: {seed: [" + ", ".join(map(str, range(100))) + "], min_run_time_s: ["
                    + ", ".join(str(i / 100) for i in range(1, 101)) + "], loop_max_iters: ["
                    + ", ".join(map(str, range(100))) + "]}\nexperiments:\n" + GOOD_KERNEL,
                    ["bad.yaml: matrix: 1,000,000 experiments after expansion (seed: 100 values, min_run_time_s: "
                     "100 values, loop_max_iters: 100 values), more than the limit of 1,000; shrink the matrix, "
                     "or raise the limit with --max-experiments 1000000"]),
    "seed_beyond_int64": ("suite: s\nexperiments:\n" + GOOD_KERNEL + "    seed: 9223372036854775808\n",
                          ["bad.yaml: experiments[0].seed: Input should be less than 9223372036854775808"]),
    "lr_nan": ("suite: s\nexperiments:\n  - {name: l, kind: learn_kernel, lr: .nan}\n",
               ["bad.yaml: experiments[0].lr: Input should be a finite number (got nan)"]),
    "train_lr_inf_and_target_nan": ("suite: s\nexperiments:\n  - {name: t, kind: train, model: lenet, lr: .inf, "
                                    "target_accuracy: .nan}\n",
                                    ["bad.yaml: experiments[0].lr: Input should be a finite number (got inf)",
                                     "bad.yaml: experiments[0].target_accuracy: Input should be a finite number (got nan)"]),
    "tolerance_inf": ("suite: s\nexperiments:\n" + GOOD_KERNEL + "    tolerance: .inf\n",
                      ["bad.yaml: experiments[0].tolerance: Input should be a finite number (got inf)"]),
    "threads_over_cpus": ("suite: s\nexperiments:\n" + GOOD_KERNEL + "    threads: 100000\n",
                          [f"bad.yaml: experiments[0].threads: 100000 is more than the {usable_cpus()} CPUs this "
                           f"process may run on (its affinity mask); at most {usable_cpus()}"]),
    "kernel_input_over_memory": ("suite: s\nexperiments:\n  - {name: m, kind: kernel, kernel: corr2d_multi_in_out, "
                                 "variants: [native], sizes: {input: [[8, 8], [100000, 100000]], kernel: [[3, 3]], "
                                 "channels_in: [64], channels_out: [64]}}\n",
                                 ['bad.yaml: experiments[0].sizes: {"input": [100000, 100000], "kernel": [3, 3], '
                                  '"channels_in": 64, "channels_out": 64}: needs at least 14.0 TiB (its inputs and '
                                  "output in float32 plus float64 copies for the reference check), more than this "
                                  "machine's"]),
    "kernel_size_grid_too_large": ("suite: s\nexperiments:\n  - {name: g, kind: kernel, kernel: corr2d, variants: "
                                   "[native], sizes: {input: [" + ", ".join(f"[{n}, {n}]" for n in range(20, 120))
                                   + "], kernel: [" + ", ".join(f"[{n}, 1]" for n in range(1, 11)) + "], stride: ["
                                   + ", ".join(f"[{n}, 1]" for n in range(1, 12)) + "]}}\n",
                                   ["bad.yaml: experiments[0].sizes: 11,000 size points (the product of 100 x 10 x 11 "
                                    "values), more than 10,000; split it into several experiments"]),
    # ---- load-time model checks (harness.models.probe_model)
    "model_args_bad_value": ("suite: s\nexperiments:\n  - {name: v, kind: train, model: vgg, model_args: {arch: foo}}\n",
                             ['bad.yaml: experiments[0].model_args: model vgg cannot be built with model_args '
                              '{"arch": "foo"}: model \'vgg\': arch must be a non-empty list of [num_convs, '
                              "out_channels] pairs of positive integers"]),
    "model_args_negative_width": ("suite: s\nexperiments:\n  - {name: v, kind: train, model: vgg, resize: [64, 64], "
                                  "model_args: {arch: [[1, -16]]}}\n",
                                  ['bad.yaml: experiments[0].model_args: model vgg cannot be built with model_args '
                                   '{"arch": [[1, -16]]}', "got [[1, -16]]"]),
    "model_args_wrong_type": ("suite: s\nexperiments:\n  - {name: x, kind: train, model: resnext, resize: [32, 32], "
                              "model_args: {groups: many}}\n",
                              ['bad.yaml: experiments[0].model_args: model resnext cannot be built with model_args '
                               '{"groups": "many"}: model \'resnext\': groups must be a positive integer and bot_mul a positive '
                               "number; got groups='many', bot_mul=1.0"]),
    "resize_too_small_for_vgg": ("suite: s\nexperiments:\n  - {name: v, kind: train, model: vgg}\n",
                                 ["bad.yaml: experiments[0].resize: model vgg cannot take 28x28 (the default without "
                                  "resize) images in batches of 128: RuntimeError: ", "Output size is too small"]),
    "batchnorm_over_one_value": ("suite: s\nexperiments:\n  - {name: r, kind: train, model: resnet18, batch_size: 1, "
                                 "resize: [8, 8]}\n",
                                 ["bad.yaml: experiments[0].resize: model resnet18 cannot take 8x8 images in batches "
                                  "of 1: a BatchNorm layer would see one value per channel in training"]),
    "model_a_million_layers": ("suite: s\nexperiments:\n  - {name: v, kind: train, model: vgg, resize: [32, 32], "
                               "batch_size: 2, model_args: {arch: [[1000000, 16]]}}\n",
                               ['bad.yaml: experiments[0].model_args: model vgg with model_args {"arch": '
                                '[[1000000, 16]]} has 1,000,003 layers (convolutions and linear layers), more than '
                                "the 1,000 a suite may build (the deepest registered here, resnext, has 29)"]),
    "model_args_over_memory": ("suite: s\nexperiments:\n  - {name: v, kind: train, model: vgg, resize: [32, 32], "
                               "batch_size: 2, model_args: {arch: [[2, 1000000]]}}\n"
                               "  - {name: r, kind: train, model: resnext, resize: [32, 32], model_args: "
                               "{bot_mul: 100000}}\n",
                               ["bad.yaml: experiments[0].model_args: a training step of model vgg "
                                "(10,048,603,826,378 parameters) on batches of 2 at 32x32 needs about 73.1 TiB "
                                "(activations kept for backward, weights and gradients, fp32), more than this "
                                "machine's", "of memory; use a smaller resize, batch_size or model_args",
                                "bad.yaml: experiments[1].model_args: a training step of model resnext "
                                "(150,860,988,938 parameters) on batches of 128"]),
    "train_batch_over_memory": ("suite: s\nexperiments:\n  - {name: t, kind: train, model: lenet, "
                                "resize: [100000, 100000]}\n",
                                ["bad.yaml: experiments[0].resize: one batch of 128 images at 100000x100000 needs "
                                 "4.7 TiB, more than this machine's", "of memory; use a smaller resize or batch_size"]),
}


@pytest.mark.parametrize("name", sorted(BAD_SUITES))
def test_bad_suite_exits_2_with_the_location_and_writes_nothing(name, tmp_path):
    text, expected = BAD_SUITES[name]
    write_suite(tmp_path / "bad.yaml", text)
    out = tmp_path / "results"
    proc = run_cli("run", "bad.yaml", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    for fragment in expected:
        assert fragment in proc.stderr
    assert len(proc.stderr.splitlines()) <= 10
    assert not out.exists()  # no results directory, no MLflow store
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("target, message", [
    ("missing.yaml", "error: missing.yaml: no such file"),
    (".", "error: .: is a directory; give a suite file"),
])
def test_missing_file_or_directory_exits_2(target, message, tmp_path):
    proc = run_cli("run", target, "--out", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message)
    assert not (tmp_path / "results").exists()


def test_unknown_device_exits_2_listing_the_valid_ones(tmp_path):
    write_suite(tmp_path / "ok.yaml", "suite: s\nexperiments:\n" + GOOD_KERNEL)
    proc = run_cli("run", "ok.yaml", "--device", "tpu", "--out", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument --device: invalid choice: 'tpu'" in proc.stderr
    assert "auto" in proc.stderr and "cpu" in proc.stderr and "cuda" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_cuda_without_a_gpu_exits_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda is valid here")
    write_suite(tmp_path / "ok.yaml", "suite: s\nexperiments:\n" + GOOD_KERNEL)
    proc = run_cli("run", "ok.yaml", "--device", "cuda", "--out", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: --device cuda: no CUDA device is available" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_k_that_selects_nothing_exits_2(tmp_path):
    write_suite(tmp_path / "ok.yaml", "suite: s\nexperiments:\n" + GOOD_KERNEL)
    proc = run_cli("list", "ok.yaml", "-k", "resnet", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: ok.yaml: -k 'resnet' selects no experiment (names: c)" in proc.stderr


def test_several_problems_are_reported_together(tmp_path):
    text = "suite: s\nexperiments:\n" + GOOD_KERNEL.replace("vectorized", "vectorised").replace("loop", "lop")
    path = write_suite(tmp_path / "bad.yaml", text)
    with pytest.raises(Exception) as err:
        load_suite(path)
    assert "experiments[0].variants[0]" in str(err.value) and "experiments[0].variants[1]" in str(err.value)


def test_matrix_expands_over_every_experiment_with_defaults_applied(tmp_path):
    path = write_suite(tmp_path / "m.yaml", """
        suite: m
        defaults: {min_run_time_s: 0.01, lr: 0.5}
        experiments:
          - {name: c, kind: kernel, kernel: corr2d, variants: [native], sizes: {input: [[4, 4]], kernel: [[2, 2]]}}
          - {name: learn, kind: learn_kernel}
        matrix: {seed: [0, 1, 2], dtype: [float32, float64]}
    """)
    suite = load_suite(path)
    ids = [e.id for e in suite.experiments]
    assert ids[:3] == ["c[seed=0,dtype=float32]", "c[seed=0,dtype=float64]", "c[seed=1,dtype=float32]"]
    assert len(ids) == 6 + 3  # learn_kernel has no dtype: only the seed axis applies to it
    assert "learn[seed=2]" in ids
    kernel = suite.experiments[5].spec
    assert isinstance(kernel, KernelSpec) and (kernel.seed, kernel.dtype, kernel.min_run_time_s) == (2, "float64", 0.01)
    assert suite.experiments[6].spec.lr == 0.5
    with pytest.raises(Exception):  # frozen: a spec cannot change after validation
        kernel.seed = 3


def test_seed_override_replaces_the_seed_axis_and_select_filters(tmp_path):
    path = write_suite(tmp_path / "m.yaml", "suite: m\nmatrix: {seed: [0, 1]}\nexperiments:\n" + GOOD_KERNEL
                       + "  - {name: learn, kind: learn_kernel, seed: 4}\n")
    suite = load_suite(path, seed=7, select="lea")
    assert [(e.id, e.spec.seed) for e in suite.experiments] == [("learn", 7)]


def test_list_shows_the_expanded_rows(tmp_path):
    write_suite(tmp_path / "ok.yaml", "suite: s\nmatrix: {seed: [0, 1]}\nexperiments:\n" + GOOD_KERNEL)
    proc = run_cli("list", "ok.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "c[seed=0]" in proc.stdout and "c[seed=1]" in proc.stdout
    assert proc.stdout.rstrip().endswith("2 experiments, 6 rows")


def test_shipped_suites_validate():
    for path in sorted((REPO / "suites").glob("*.yaml")):
        assert load_suite(path).experiments, path


# ---- limits: the YAML file -----------------------------------------------------------------

def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("suite: s\n# " + "x" * MAX_FILE_BYTES + "\n", encoding="utf-8")
    proc = run_cli("list", path, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {path}: larger than 1 MiB, the most a suite file may be")


def test_billion_laughs_is_refused_before_anything_is_expanded(tmp_path):
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 30)]  # 10**30 values
    path = write_suite(tmp_path / "lol.yaml", "suite: s\nexperiments:\n" + GOOD_KERNEL + "\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"lol.yaml:13:5: expands to more than 100,000 values"):
        read_yaml(path)
    assert time.perf_counter() - start < 1.0


def test_yaml_merge_keys_may_be_overridden_but_real_duplicates_are_found(tmp_path):
    merged = write_suite(tmp_path / "m.yaml", """
        base: &b {kind: learn_kernel, lr: 0.1}
        derived: &d {<<: *b, lr: 0.2}
        suite: s
        experiments:
          - {<<: *d, name: a, iterations: 3}
    """)
    assert read_yaml(merged)["experiments"] == [{"kind": "learn_kernel", "lr": 0.2, "name": "a", "iterations": 3}]
    same_int = write_suite(tmp_path / "i.yaml", "a: {1: x, 0x1: y}\n")
    with pytest.raises(UserError, match=r"i.yaml:1:11: duplicate key '0x1' \(first at line 1\)"):
        read_yaml(same_int)
    deep = write_suite(tmp_path / "d.yaml", "a:\n  b:\n    - c: 1\n      d: {e: 1, e: 2}\n")
    with pytest.raises(UserError, match=r"d.yaml:4:17: duplicate key 'e' \(first at line 4\)"):
        read_yaml(deep)


def test_object_tags_are_still_refused_by_the_limited_loader(tmp_path):
    path = write_suite(tmp_path / "o.yaml", "suite: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UserError, match="o.yaml:1:8: YAML tags that construct objects are not allowed"):
        read_yaml(path)
    assert not (tmp_path / "pwned").exists()


# ---- limits: flags -------------------------------------------------------------------------

def _matrix_suite(tmp_path, seeds: int):
    return write_suite(tmp_path / "m.yaml", "suite: s\nmatrix: {seed: [" + ", ".join(map(str, range(seeds)))
                       + "]}\nexperiments:\n  - {name: l, kind: learn_kernel}\n")


def test_max_experiments_flag_raises_the_bound_on_list_and_run(tmp_path):
    path = _matrix_suite(tmp_path, MAX_EXPERIMENTS + 1)
    proc = run_cli("list", path, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (f"error: {path}: matrix: 1,001 experiments after expansion (seed: 1,001 values), more than the limit "
            f"of 1,000; shrink the matrix, or raise the limit with --max-experiments 1001") in proc.stderr
    proc = run_cli("list", path, "--max-experiments", "1001", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("1001 experiments, 1001 rows")
    out = tmp_path / "results"
    proc = run_cli("run", path, "--max-experiments", "1000", "--no-tracking", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and "more than the limit of 1,000" in proc.stderr
    assert not out.exists()
    assert load_suite(path, seed=3, max_experiments=1).experiments[0].spec.seed == 3  # --seed replaces the axis


@pytest.mark.parametrize("flags, message", [
    (["--max-experiments", "0"], "error: --max-experiments 0: must be at least 1 (default 1,000)"),
    (["--seed", str(2**63)], f"error: --seed {2**63}: a seed must be >= 0 and below 2**63"),
    (["--seed", "-1"], "error: --seed -1: a seed must be >= 0 and below 2**63"),
])
def test_bad_selection_flags_exit_2_naming_the_flag(flags, message, tmp_path):
    write_suite(tmp_path / "ok.yaml", "suite: s\nexperiments:\n" + GOOD_KERNEL)
    out = tmp_path / "results"
    proc = run_cli("run", "ok.yaml", *flags, "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(message)
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--seed", "--max-experiments"])
@pytest.mark.parametrize("value", ["１２", "1_000", "٣"])
def test_a_number_flag_takes_ascii_digits_only(flag, value, tmp_path):
    write_suite(tmp_path / "ok.yaml", "suite: s\nexperiments:\n" + GOOD_KERNEL)
    proc = run_cli("list", "ok.yaml", flag, value, "--no-estimate", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: argument {flag}: invalid integer value: {value!r} (an integer in ASCII digits 0-9)" in proc.stderr


@pytest.mark.parametrize("argv", [["baseline", "kernels-ci", "--rounds"], ["check", "kernels-ci", "--rounds"],
                                  ["launch", "smoke", "--shards"], ["launch", "smoke", "--gpus-per-shard"],
                                  ["launch", "smoke", "--time-min"], ["ui", "--port"], ["reproduce", "DIR", "--epochs"]])
def test_every_number_flag_takes_ascii_digits_only(argv, tmp_path):
    """int() alone takes full-width and other scripts' digits: every command's number flags refuse them."""
    proc = run_cli(*argv, "１２", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: argument {argv[-1]}: invalid integer value: '１２' (an integer in ASCII digits 0-9)" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_states_the_default_bound():
    for command in ("run", "list"):
        proc = run_cli(command, "--help")
        assert proc.returncode == 0
        assert f"more than N experiments (default {MAX_EXPERIMENTS})" in " ".join(proc.stdout.split())


def test_a_seed_just_below_2_63_is_accepted(tmp_path):
    path = write_suite(tmp_path / "s.yaml", "suite: s\nexperiments:\n  - {name: l, kind: learn_kernel, "
                       f"seed: {2**63 - 1}}}\n")
    assert load_suite(path).experiments[0].spec.seed == 2**63 - 1


# ---- limits: memory, models --------------------------------------------------------------

def test_a_training_step_over_the_machines_memory_is_refused(tmp_path):
    """The batch itself fits (half the RAM), its activations do not: the probe's estimate decides."""
    from harness.core.envinfo import host_memory_bytes

    batch = host_memory_bytes() // (2 * 4 * 28 * 28)
    path = write_suite(tmp_path / "m.yaml", f"suite: s\nexperiments:\n  - {{name: t, kind: train, model: lenet, "
                       f"batch_size: {batch}}}\n")
    with pytest.raises(UserError, match=rf"m.yaml: experiments\[0\].batch_size: a training step of model lenet on "
                       rf"batches of {batch} at 28x28 \(the default without resize\) needs about .* \(activations kept "
                       rf"for backward, weights and gradients, fp32\), more than this machine's .* of memory"):
        load_suite(path)


def test_shipped_training_suites_are_probed_without_the_slow_meta_kernels():
    """The load-time model probe stays cheap: no sympy / torch._dynamo import (seconds) for the shipped
    suites, and every training experiment probed in well under a second."""
    code = ("import sys, time, harness.kernels, harness.models\n"
            "from harness.suite import load_suite\n"
            "t = time.perf_counter()\n"
            "for s in ('suites/training.yaml', 'suites/smoke.yaml', 'suites/training-fast.yaml'): load_suite(s)\n"
            "print(time.perf_counter() - t, 'torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seconds, dynamo, sympy = proc.stdout.split()
    assert (dynamo, sympy) == ("False", "False")
    assert float(seconds) < 5  # ~0.3 s on a loaded 2-core VM


# ---- plugins -------------------------------------------------------------------------------

@pytest.mark.parametrize("source, message", [
    ("raise ValueError('bad setting')\n",
     "error: HARNESS_PLUGINS: importing plugin 'bad_plugin' raised ValueError: bad setting (at {dir}/bad_plugin.py:1); "
     "fix the plugin, or remove 'bad_plugin' from HARNESS_PLUGINS"),
    ("import no_such_dependency_xyz\n",
     "error: HARNESS_PLUGINS: importing plugin 'bad_plugin' raised ModuleNotFoundError: No module named "
     "'no_such_dependency_xyz' (at {dir}/bad_plugin.py:1)"),
    ("import sys\nsys.exit(3)\n", "error: HARNESS_PLUGINS: importing plugin 'bad_plugin' raised SystemExit: 3"),
    ("def f(:\n", "error: HARNESS_PLUGINS: importing plugin 'bad_plugin' raised SyntaxError: invalid syntax"),
])
def test_a_plugin_that_raises_is_an_input_error(source, message, tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "bad_plugin.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugins), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HARNESS_PLUGINS", "bad_plugin")
    write_suite(tmp_path / "ok.yaml", "suite: s\nexperiments:\n" + GOOD_KERNEL)
    out = tmp_path / "results"
    proc = run_cli("run", "ok.yaml", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(message.format(dir=plugins)), proc.stderr
    assert not out.exists()
