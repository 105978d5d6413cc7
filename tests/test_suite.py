"""Suite validation as a user meets it: a real `python -m harness` subprocess, the exact message,
exit code 2, and nothing written (no results directory, no MLflow store)."""
from __future__ import annotations

import pytest
from conftest import run_cli, write_suite

from harness.suite import KernelSpec, load_suite

GOOD_KERNEL = """
  - name: c
    kind: kernel
    kernel: corr2d
    variants: [loop, vectorized, native]
    sizes: {input: [[6, 8]], kernel: [[1, 2]]}
"""

BAD_SUITES = {
    "unknown_top_key": ("suite: s\nexperimens: []\n",
                        ["bad.yaml: experimens: unknown field 'experimens' (known: suite, description, defaults, "
                         "experiments, matrix); did you mean 'experiments'?"]),
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
                        ["bad.yaml: defaults.batchsize: not a field of any experiment in this suite"]),
    "empty_file": ("", ["bad.yaml: the file is empty; a suite needs `suite:` and `experiments:`"]),
    "not_a_mapping": ("- a\n- b\n", ["bad.yaml: a suite is a YAML mapping with `suite:` and `experiments:`, not a list"]),
    "not_yaml": ("suite: [unclosed\n", ["bad.yaml:2:1: not valid YAML"]),
    "object_constructing_tag": ("!!python/object/apply:os.system ['touch pwned']\n",
                                ["bad.yaml:1:1: YAML tags that construct objects are not allowed"]),
    "no_experiments": ("suite: s\nexperiments: []\n",
                       ["bad.yaml: experiments: List should have at least 1 item after validation"]),
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
    from conftest import REPO

    for path in sorted((REPO / "suites").glob("*.yaml")):
        assert load_suite(path).experiments, path
