"""`harness report`: results of many runs in one frame, aggregated and compared, checked against
numbers computed by hand from tests/synthetic_runs.py; refusal of foreign and old files."""
from __future__ import annotations

import io
import math
import re

import pandas as pd
import pytest
from conftest import run_cli, write_suite
from synthetic_runs import KA, KB, TA, TB, write_runs

from harness.views import compare
from harness.run import results
from harness.core.errors import UserError

SD = math.sqrt  # the sample standard deviation of two values x, y is |x - y| / sqrt(2)


@pytest.fixture
def runs(tmp_path):
    return write_runs(tmp_path / "results")


def frame(runs, *ids):
    return compare.load_runs([runs[i] for i in ids])


def test_kernel_summary_is_mean_and_std_over_runs_and_seeds(runs):
    k = compare.kernel_summary(frame(runs, KA, KB)).set_index(["size", "variant"])
    got = k.loc[[("in=8x8 k=3x3", "native"), ("in=8x8 k=3x3", "loop"), ("in=32x32 k=3x3", "native")],
                ["n", "runs", "speedup_mean", "speedup_std", "time_mean_s"]].reset_index()
    # native at 8x8: speedups 1e-3/1e-5, 1.2e-3/2e-5, 1e-3/5e-6, 1.1e-3/5.5e-6 = 100, 60, 200, 200
    expected = pd.DataFrame({
        "size": ["in=8x8 k=3x3", "in=8x8 k=3x3", "in=32x32 k=3x3"], "variant": ["native", "loop", "native"],
        "n": [4, 4, 2], "runs": [2, 2, 2],
        "speedup_mean": [140.0, 1.0, (100 + 200 / 3) / 2],
        "speedup_std": [math.sqrt((40**2 + 80**2 + 60**2 + 60**2) / 3), 0.0, (100 - 200 / 3) / SD(2)],
        "time_mean_s": [(1e-5 + 2e-5 + 5e-6 + 5.5e-6) / 4, (1e-3 + 1.2e-3 + 1e-3 + 1.1e-3) / 4, 1.25e-4]})
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-9)


def test_model_summary_is_mean_and_std_over_seeds_and_runs(runs):
    m = compare.model_summary(frame(runs, TA, TB)).set_index("model")
    lenet = m.loc["lenet"]
    assert (lenet["n"], lenet["seeds"], lenet["runs"]) == (4, 2, 2)
    assert lenet["val_acc_mean"] == pytest.approx(0.82)
    assert lenet["val_acc_std"] == pytest.approx(math.sqrt((0.02**2 * 2 + 0.01**2 * 2) / 3))
    assert lenet["images_per_s_mean"] == pytest.approx(1650)
    assert lenet["images_per_s_std"] == pytest.approx(math.sqrt((650**2 + 450**2 + 350**2 + 750**2) / 3))
    assert lenet["time_to_target_s_mean"] == pytest.approx(9) and lenet["time_to_target_s_std"] == pytest.approx(
        math.sqrt((1 + 25 + 16 + 4) / 3))
    assert lenet["peak_mem_bytes_mean"] == pytest.approx(105 * 2**20)
    resnet = m.loc["resnet18"]
    assert resnet["val_acc_mean"] == pytest.approx(0.855) and resnet["seeds"] == 1
    assert math.isnan(resnet["time_to_target_s_mean"])


COLUMNS = ["case", "metric", "mean_a", "std_a", "mean_b", "std_b", "change", "spread", "beyond_spread", "verdict"]
EXPECTED_KERNELS = [  # hand-computed from the table in synthetic_runs.py
    # two seeds per side: spread = the larger std of the two sides
    ("corr2d/native in=8x8 k=3x3", "time_median_s", 1.5e-5, 1e-5 / SD(2), 5.25e-6, 5e-7 / SD(2), -0.65, 1e-5 / SD(2), True, "better"),
    ("corr2d/loop in=8x8 k=3x3", "time_median_s", 1.1e-3, 2e-4 / SD(2), 1.05e-3, 1e-4 / SD(2), -0.05 / 1.1, 2e-4 / SD(2), False,
     "within spread"),
    ("corr2d/native in=8x8 k=3x3", "speedup", 80.0, 40 / SD(2), 200.0, 0.0, 1.5, 40 / SD(2), True, "better"),
    # one row per side: spread = the IQR of the timing; for a speedup, speedup x (rel. IQR + baseline's rel. IQR)
    ("corr2d/native in=32x32 k=3x3", "time_median_s", 1e-4, math.nan, 1.5e-4, math.nan, 0.5, 2e-5, True, "worse"),
    ("corr2d/loop in=32x32 k=3x3", "time_median_s", 1e-2, math.nan, 1e-2, math.nan, 0.0, 1e-3, False, "within spread"),
    ("corr2d/native in=32x32 k=3x3", "speedup", 100.0, math.nan, 200 / 3, math.nan, -1 / 3, 100 * (0.1 + 0.1), True, "worse"),
]
EXPECTED_MODELS = [
    ("lenet", "val_acc", 0.82, 0.04 / SD(2), 0.82, 0.02 / SD(2), 0.0, 0.04 / SD(2), False, "within spread"),
    ("lenet", "images_per_s", 1100.0, 200 / SD(2), 2200.0, 400 / SD(2), 1.0, 400 / SD(2), True, "better"),
    ("lenet", "epoch_time_s", 2.1, 0.2 / SD(2), 1.05, 0.1 / SD(2), -0.5, 0.2 / SD(2), True, "better"),
    ("lenet", "time_to_target_s", 12.0, 4 / SD(2), 6.0, 2 / SD(2), -0.5, 4 / SD(2), True, "better"),
    ("lenet", "peak_mem_bytes", 105.0 * 2**20, 10 * 2**20 / SD(2), 105.0 * 2**20, 10 * 2**20 / SD(2), 0.0,
     10 * 2**20 / SD(2), False, "within spread"),
    ("resnet18", "val_acc", 0.85, math.nan, 0.86, math.nan, 0.01 / 0.85, math.nan, pd.NA, "spread unknown"),
]


def assert_matches(c, expected):
    got = c.set_index(["case", "metric"])
    want = pd.DataFrame(expected, columns=COLUMNS).set_index(["case", "metric"])
    got = got.loc[want.index, want.columns]
    pd.testing.assert_frame_equal(got.drop(columns=["beyond_spread", "verdict"]), want.drop(columns=["beyond_spread", "verdict"]),
                                  check_dtype=False, rtol=1e-9)
    assert got["beyond_spread"].astype(object).where(got["beyond_spread"].notna(), None).tolist() == \
        want["beyond_spread"].astype(object).where(want["beyond_spread"].notna(), None).tolist()
    assert got["verdict"].tolist() == want["verdict"].tolist()


def test_two_runs_are_compared_case_by_case_against_their_spread(runs):
    c = compare.compare(frame(runs, KA, KB))
    assert set(c["by"]) == {"run"} and (c["side_a"].iloc[0], c["side_b"].iloc[0]) == (KA, KB)
    assert_matches(c, EXPECTED_KERNELS)
    assert len(c) == 6  # 2 sizes x 2 variants of time, 2 speedups (the baseline's is 1 by definition)
    assert_matches(compare.compare(frame(runs, TA, TB)), EXPECTED_MODELS)


def test_the_runs_of_two_commits_are_compared_when_more_than_two_runs_are_given(runs):
    c = compare.compare(frame(runs, KA, KB, TA, TB))
    assert set(c["by"]) == {"commit"} and c["side_a"].iloc[0] == "c1" * 5
    assert_matches(c, EXPECTED_KERNELS + EXPECTED_MODELS)


def test_by_names_what_is_compared_and_needs_exactly_two(runs):
    assert compare.compare(frame(runs, KA)) is None  # nothing to compare with
    with pytest.raises(UserError, match=r"--by device: the selection holds 1 devices \(Test CPU\)"):
        compare.compare(frame(runs, KA, KB), by="device")


def test_the_report_cli_prints_tables_and_the_comparison(runs):
    proc = run_cli("report", runs[KA], runs[KB])
    assert proc.returncode == 0, proc.stderr
    out = re.sub(" +", " ", proc.stdout)  # markdown tables pad their columns
    assert "## Kernel corr2d — suite ks, float32 on Test CPU" in out
    assert "| in=8x8 k=3x3 | 1× | 140× ± 71.2× |" in out  # mean ± std of 100, 60, 200, 200
    assert "| in=8x8 k=3x3 | 1.07 ms ±9% (n=4) | 10.1 µs ±69% (n=4) |" in out
    assert f"## Comparison by run: A = {KA} → B = {KB}" in out
    assert ("| ks: corr2d/native in=8x8 k=3x3 | time_median_s | 15 µs ± 7.07 µs (n=2) | 5.25 µs ± 354 ns (n=2) "
            "| -65.0% | ±47.1% | yes | better |") in out
    assert "| ks: corr2d/native in=32x32 k=3x3 | speedup | 100× | 66.7× | -33.3% | ±20.0% | yes | worse |" in out
    assert "2 worse, 2 better, 2 within spread." in out


def test_report_csv_holds_the_unformatted_numbers_and_since_filters(runs, tmp_path):
    out = tmp_path / "r.csv"
    proc = run_cli("report", runs[KA].parent.parent, "--suite", "ts", "--since", "2026-01-01T10:30", "--out", out)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert set(table["table"]) == {"models", "comparison"}
    assert_matches(table[table["table"] == "comparison"], EXPECTED_MODELS)
    html = run_cli("report", runs[TB], "--format", "html")
    assert html.returncode == 0 and html.stdout.startswith("<!doctype html>") and "<table" in html.stdout


def test_report_reads_the_same_from_mlflow_as_from_the_results_files(tmp_path, mlflow_uri):
    write_suite(tmp_path / "s.yaml", """
        suite: viaml
        defaults: {min_run_time_s: 0.01, loop_max_iters: 100}
        experiments:
          - {name: corr, kind: kernel, kernel: corr2d, variants: [loop, native], sizes: {input: [[6, 8], [32, 32]], kernel: [[2, 2]]}}
    """)
    proc = run_cli("run", tmp_path / "s.yaml", "--out", tmp_path / "results", "--tracking-uri", mlflow_uri)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "results" / "viaml").iterdir()
    from_files = compare.kernel_summary(compare.load_runs([run_dir])).sort_values(["size", "variant"])
    from_mlflow = compare.kernel_summary(compare.load_mlflow(mlflow_uri, suite="viaml")).sort_values(["size", "variant"])
    pd.testing.assert_frame_equal(from_mlflow.reset_index(drop=True), from_files.reset_index(drop=True))
    assert "capped" in set(from_files["status"])  # the 32x32 loop is over loop_max_iters
    cli = run_cli("report", "--from-mlflow", "--tracking-uri", mlflow_uri, "--format", "csv")
    assert cli.returncode == 0, cli.stderr
    assert len(pd.read_csv(io.StringIO(cli.stdout))) == len(from_files)


@pytest.mark.parametrize("content, message", [
    ("schema_version,suite\n0,ks\n", "results schema_version 0, this harness reads 1; re-run the suite"),
    ("a,b\n1,2\n", "results schema_version none, this harness reads 1"),
])
def test_an_old_or_foreign_results_file_is_refused_with_exit_2(runs, tmp_path, content, message):
    old = tmp_path / "old" / "ks" / "20250101T000000Z-000000"
    old.mkdir(parents=True)
    (old / "results.csv").write_text(content)
    proc = run_cli("report", runs[KA], old)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {old / 'results.csv'}: {message}") and "Traceback" not in proc.stderr


def test_a_results_file_missing_columns_is_refused(tmp_path):
    df = results.to_frame([]).drop(columns=["speedup"])
    path = tmp_path / "r.csv"
    df.to_csv(path, index=False)
    path.write_text(path.read_text() + "1" + "," * (len(df.columns) - 1) + "\n")
    with pytest.raises(UserError, match="not a harness results file .missing columns: speedup"):
        compare.load_runs([path])


@pytest.mark.parametrize("args, message", [
    (["{empty}"], "no results found (looked for <suite>/<run>/results.parquet); run a suite first"),
    (["{runs}", "--since", "yesterday"], "--since 'yesterday': not a date; give YYYY-MM-DD or an ISO time"),
    (["{runs}", "--suite", "nope"], "no results match --suite nope (suites found: ks, ts)"),
    (["{runs}", "--by", "commit", "--suite", "ks", "--since", "2026-01-02"], "--by commit: the selection holds 1 commits"),
    (["{missing}"], "no such file or directory"),
    (["--from-mlflow", "{runs}"], "--from-mlflow reads the runs from the tracking store: give no RUN_DIR"),
])
def test_bad_input_exits_2_with_a_message(runs, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "runs": tmp_path / "results", "missing": tmp_path / "nope"}
    proc = run_cli("report", *(a.format(**paths) for a in args))
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_format_is_an_argparse_error():
    proc = run_cli("report", "--format", "pdf")
    assert proc.returncode == 2 and "invalid choice: 'pdf'" in proc.stderr


def test_base_name_drops_only_the_seed():
    assert compare.base_name("lenet[seed=1]") == "lenet"
    assert compare.base_name("x[lr=0.1,seed=2]") == "x[lr=0.1]"
    assert compare.base_name("x[resize=[96, 96],seed=0]") == "x[resize=[96, 96]]"
    assert compare.base_name("corr2d") == "corr2d"


def _fingerprinted(root, run_id: str, prints: dict, suite: str = "ts", **changes) -> object:
    """Run TA's or TB's rows under `run_id` with fingerprints {(model, seed): fingerprint} and `changes`."""
    from synthetic_runs import train_rows

    rows = [r | {"run_id": run_id, "suite": suite, "fingerprint": prints[(r["model"], r["seed"])]} | changes
            for r in train_rows(TA if run_id < TB else TB)]
    results.save(rows, root / suite / run_id)
    return root / suite / run_id


def test_report_says_per_experiment_whether_two_runs_fingerprints_are_identical(tmp_path):
    a = _fingerprinted(tmp_path, TA, {("lenet", 0): "f0", ("lenet", 1): "f1", ("resnet18", 0): "r0"})
    b = _fingerprinted(tmp_path, TB, {("lenet", 0): "f0", ("lenet", 1): "f1-other", ("resnet18", 0): "r0-other"},
                       dataset_digest="d2")
    from harness.views.determinism import fingerprints

    df = compare.load_runs([a, b])
    f = fingerprints(df, compare.pick_sides(df)).set_index(["experiment", "seed"])
    assert f["identical"].tolist() == ["yes", "no", "no"]
    assert f.loc[("lenet", 0), "recorded differences"] == "data, commit"  # listed although identical
    assert f.loc[("resnet18", 0), ["A", "B"]].tolist() == ["r0", "r0-other"]
    assert f.loc[("resnet18", 0), "recorded differences"] == "data, commit"  # commit c1 -> c2 (synthetic_runs)
    proc = run_cli("report", a, b)
    assert proc.returncode == 0, proc.stderr
    out = re.sub(" +", " ", proc.stdout)
    assert f"## Fingerprints by run: A = {TA} → B = {TB}" in out
    assert "1 of 3 training experiments (per seed) bitwise identical" in out
    assert "| ts | lenet | 0 | strict | f0 | f0 | yes | data, commit |" in out
    assert "| ts | resnet18 | 0 | strict | r0 | r0-other | no | data, commit |" in out


def test_the_determinism_cost_compares_strict_and_fast_runs_of_the_same_networks(tmp_path):
    strict = _fingerprinted(tmp_path, TA, {("lenet", 0): "a", ("lenet", 1): "b", ("resnet18", 0): "c"})
    fast = _fingerprinted(tmp_path, TB, {("lenet", 0): "d", ("lenet", 1): "e", ("resnet18", 0): "f"},
                          suite="ts-fast", determinism="fast", precision="bf16")
    from harness.views.determinism import determinism_cost

    assert determinism_cost(compare.load_runs([strict])) is None  # one mode only: no view
    c = determinism_cost(compare.load_runs([strict, fast])).set_index("name")
    # lenet: val_acc strict .80/.84, fast .81/.83 -> same mean; images/s 1100 -> 2200; resnet18 .85 -> .86, 300 -> 330
    assert c.loc["lenet", "accuracy change"] == pytest.approx(0.0, abs=1e-12)
    assert c.loc["lenet", "speed ratio"] == pytest.approx(2.0)
    assert c.loc["resnet18", "accuracy change"] == pytest.approx(0.01)
    assert c.loc["resnet18", "speed ratio"] == pytest.approx(1.1)
    assert c.loc["resnet18", "fast precision"] == "bf16" and c.loc["lenet", "n strict"] == 2
    proc = run_cli("report", strict, fast)
    assert proc.returncode == 0, proc.stderr
    out = re.sub(" +", " ", proc.stdout)
    assert "## Determinism cost: strict vs fast" in out
    assert "| resnet18 | resnet18 | 3 | 64 | 0.1 | 28x28 | Test CPU | 0.85 | 0.86 | +1.00 pts | 300 | 330 | 1.10× | bf16 |" in out
    assert "## Fingerprints" not in out  # no experiment of one suite on both sides
