"""A suite run end to end: the run directory, the results, exit codes, failure isolation, and what
lands in a real MLflow SQLite store."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import REPO, run_cli, write_suite, store_copy

from harness.run import results

E2E = """
suite: e2e
note: A note for whoever reads the results.
defaults: {min_run_time_s: 0.01}
experiments:
  - name: corr
    kind: kernel
    kernel: corr2d
    variants: [loop, vectorized, native]
    baseline: loop
    loop_max_iters: 100            # in=16x16 has 240 (k=1x2) and 196 (k=3x3) output pixels: capped
    sizes: {input: [[6, 8], [16, 16]], kernel: [[1, 2], [3, 3]]}
  - name: learn
    kind: learn_kernel
  - name: wrong                    # float32 cannot meet this tolerance: a failed row, not a fast one
    kind: kernel
    kernel: conv1x1
    variants: [matmul]
    tolerance: 1.0e-15
    sizes: {channels_in: [8], channels_out: [4], input: [[5, 5]]}
"""


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, _migrated_store):
    """One real `python -m harness run` of the E2E suite, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("e2e")
    uri = store_copy(_migrated_store, tmp / "mlflow.db")
    write_suite(tmp / "e2e.yaml", E2E)
    proc = run_cli("run", "e2e.yaml", "--device", "cpu", "--out", tmp / "results", "--tracking-uri", uri, cwd=tmp)
    run_dirs = list((tmp / "results" / "e2e").iterdir())
    return proc, run_dirs, uri, tmp


def test_a_failed_row_makes_exit_1_and_the_others_still_run(e2e):
    proc, run_dirs, _, _ = e2e
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(run_dirs) == 1
    df = results.load(run_dirs[0])
    assert len(df) == 4 * 3 + 1 + 1
    by = {(r.experiment, r.variant, r.size): r for r in df.itertuples()}
    wrong = by[("wrong", "matmul", "ci=8 co=4 in=5x5")]
    assert wrong.status == "failed" and wrong.error.startswith("wrong result: max abs error")
    assert math.isnan(wrong.time_median_s)  # a wrong variant is never timed
    assert wrong.max_abs_err > wrong.tolerance
    assert set(df[df.experiment == "corr"].status) == {"ok", "capped"}


def test_run_directory_holds_every_output(e2e):
    _, run_dirs, _, tmp = e2e
    run_dir = run_dirs[0]
    assert {p.name for p in run_dir.iterdir()} == {"results.csv", "results.parquet", "report.md", "report.html",
                                                   "env.json", "suite.yaml", "steps.csv", "state.json",
                                                   "tracking.jsonl", "plots"}
    # a time-vs-size plot per kernel experiment with a time (`wrong` has none; learn_kernel is no kernel)
    assert [p.name for p in (run_dir / "plots").iterdir()] == ["corr-time.png"]
    from matplotlib.image import imread

    assert min(imread(run_dir / "plots" / "corr-time.png").shape) > 0
    assert not list(tmp.glob("mlruns")) and not list(REPO.glob("mlruns"))
    env = json.loads((run_dir / "env.json").read_text())
    assert env["device"] == "cpu" and env["torch"] and env["cpu_count"]
    resolved = (run_dir / "suite.yaml").read_text()
    assert "min_run_time_s: 0.01" in resolved and "determinism: strict" in resolved


def test_kernel_rows_are_checked_timed_and_compared(e2e):
    _, run_dirs, _, _ = e2e
    df = results.load(run_dirs[0])
    corr = df[df.experiment == "corr"]
    ok = corr[corr.status == "ok"]
    assert (ok.max_abs_err <= ok.tolerance).all()
    assert (ok.time_median_s > 0).all() and (ok.n_measurements >= 3).all() and (ok.time_iqr_s >= 0).all()
    assert (ok.gflops - ok.flops / ok.time_median_s / 1e9).abs().max() < 1e-9
    assert (ok.noisy == (ok.time_iqr_s > 0.1 * ok.time_median_s)).all()  # the flag is the rule, row by row
    loops = ok[ok.variant == "loop"].set_index("size")
    assert sorted(loops.index) == ["in=6x8 k=1x2", "in=6x8 k=3x3"]  # 16x16 has 240 and 196 iterations
    for r in ok[ok["size"].isin(loops.index)].itertuples():
        assert r.speedup == pytest.approx(loops.loc[r.size, "time_median_s"] / r.time_median_s)
    capped = corr[corr.status == "capped"]
    assert list(capped.variant) == ["loop", "loop"]
    assert capped.error.str.contains("Python loop iterations > loop_max_iters=100").all()
    assert capped.speedup.isna().all() and corr[corr["size"].str.startswith("in=16x16")].speedup.isna().all()
    assert set(df.code_hash.dropna().str.len()) == {16}
    assert set(df.determinism) == {"strict"} and set(df.device) == {"cpu"} and (df.threads >= 1).all()


def test_report_shows_speedups_and_the_cap(e2e):
    _, run_dirs, _, _ = e2e
    report = (run_dirs[0] / "report.md").read_text()
    assert "## corr — kernel `corr2d`" in report and "Speedup over `loop`:" in report
    assert "| in=16x16 k=3x3 | capped" in report
    assert "- `loop` at in=16x16 k=3x3: **capped** — not run: 196 Python loop iterations > loop_max_iters=100" in report
    assert "learned kernel [" in report and "loss per iteration:" in report


def test_the_report_opens_with_a_headline_naming_every_experiment_and_the_failure(e2e):
    proc, run_dirs, _, _ = e2e
    head = (run_dirs[0] / "report.md").read_text().split("## Details")[0]
    assert "- **Ran:** suite `e2e`: 3 experiments, 14 rows, on cpu (" in head
    assert "- **Took:** " in head and " from start to finish (" in head
    assert "- **Note:** A note for whoever reads the results." in head
    for exp in ("corr", "learn", "wrong"):
        assert f"- `{exp}`" in head, exp
    (corr,) = [line for line in head.splitlines() if line.startswith("- `corr`")]
    assert "vectorized " in corr and "native " in corr and "× over `loop`" in corr and " fastest " in corr
    assert corr.endswith("`loop` not timed at 2 of 4 sizes (capped)")
    assert "- `learn` (learn_kernel): seed 0: learned [" in head
    assert ("- **Failed (1 row):**\n  - `wrong` matmul ci=8 co=4 in=5x5: **failed** — wrong result: max abs error "
            in head)
    assert (run_dirs[0] / "report.html").stat().st_size > 1000
    out = proc.stdout.splitlines()
    assert out[-1] == "note: A note for whoever reads the results."  # the last thing `run` says
    assert f"report: {run_dirs[0] / 'report.md'}" in out
    assert f"        {run_dirs[0] / 'report.html'} (one page with the plots)" in out


def test_learn_kernel_reports_the_loss_per_iteration(e2e):
    _, run_dirs, _, _ = e2e
    import pandas as pd

    steps = pd.read_csv(run_dirs[0] / "steps.csv")
    losses = steps[(steps.experiment == "learn") & (steps.metric == "loss")].sort_values("step")
    assert list(losses.step) == list(range(1, 11))
    assert losses.value.is_monotonic_decreasing
    row = results.load(run_dirs[0]).set_index("experiment").loc["learn"]
    w = json.loads(row.learned_kernel)
    assert abs(w[0] - 1) < 0.15 and abs(w[1] + 1) < 0.15
    assert row.loss_final == pytest.approx(losses.value.iloc[-1], rel=1e-6)


def test_mlflow_holds_parent_children_metrics_tags_and_statuses(e2e):
    from mlflow.tracking import MlflowClient

    _, run_dirs, uri, _ = e2e
    df = results.load(run_dirs[0])
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == run_dirs[0].name
    parent = parents[0]
    assert parent.info.status == "FAILED"  # one row failed
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.info.run_id for c in children) == sorted(df.mlflow_run_id)
    for tag in ("torch", "cpu_model", "device", "git_commit", "host"):
        assert tag in parent.data.tags
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "report.md", "env.json", "suite.yaml", "plots"} <= artifacts
    assert exp.artifact_location.startswith("file://") and "mlartifacts" in exp.artifact_location

    by_id = {c.info.run_id: c for c in children}
    for r in df.itertuples():
        child = by_id[r.mlflow_run_id]
        assert child.info.status == ("FAILED" if r.status == "failed" else "FINISHED")
        assert child.data.tags["determinism"] == "strict" and child.data.tags["variant"] == r.variant
        assert child.data.tags["spec_hash"] and child.data.params["seed"] == "0"
        if r.status == "ok" and r.kind == "kernel":
            assert child.data.metrics["time_median_s"] == pytest.approx(r.time_median_s)
            assert child.data.params["variant"] == r.variant
    learn = by_id[df.set_index("experiment").loc["learn", "mlflow_run_id"]]
    history = client.get_metric_history(learn.info.run_id, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, 11))


def test_a_raising_task_is_a_failed_row_and_the_suite_goes_on(tmp_path, monkeypatch):
    from harness.kernels import KERNELS
    from harness.kernels.base import Variant
    from harness.run.runner import run_suite
    from harness.suite import load_suite
    from harness.run.null import NullTracker

    family = KERNELS.get("corr2d")

    def boom(case, X, K):
        raise RuntimeError("boom")

    monkeypatch.setitem(family.variants, "vectorized", Variant("vectorized", boom))
    path = write_suite(tmp_path / "s.yaml", """
        suite: iso
        defaults: {min_run_time_s: 0.01}
        experiments:
          - {name: a, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[5, 5]], kernel: [[2, 2]]}}
          - {name: b, kind: learn_kernel, iterations: 2}
    """)
    outcome = run_suite(load_suite(path), device="cpu", out_root=tmp_path / "r", tracker=NullTracker())
    assert outcome.exit_code == 1
    assert [(r["experiment"], r["variant"], r["status"]) for r in outcome.rows] == [
        ("a", "vectorized", "failed"), ("a", "native", "ok"), ("b", "sgd", "ok")]
    assert outcome.rows[0]["error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in (outcome.run_dir / "errors.log").read_text()

    fast = run_suite(load_suite(path), device="cpu", out_root=tmp_path / "r2", tracker=NullTracker(), fail_fast=True)
    assert fast.exit_code == 1 and [r["status"] for r in fast.rows] == ["failed"]


def test_no_tracking_writes_results_but_no_store(tmp_path):
    write_suite(tmp_path / "s.yaml", "suite: nt\nexperiments:\n  - {name: b, kind: learn_kernel, iterations: 2}\n")
    proc = run_cli("run", "s.yaml", "--no-tracking", "--out", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "results" / "mlflow.db").exists()
    (run_dir,) = (tmp_path / "results" / "nt").iterdir()
    assert results.load(run_dir).status.tolist() == ["ok"]


def test_help_answers_without_importing_torch_mlflow_or_pandas():
    code = ("import sys\nfrom harness.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nheavy = {'torch', 'mlflow', 'pandas'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "run" in proc.stdout and "list" in proc.stdout and "env" in proc.stdout


def test_env_prints_the_machine():
    proc = run_cli("env", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    for key in ("python", "torch", "cuda_available", "cudnn", "cpu_model", "torch_threads", "git_commit", "git_dirty"):
        assert key in info


def test_ctrl_c_keeps_finished_rows_and_ends_mlflow_runs_killed(tmp_path, mlflow_uri):
    import signal
    import time

    from mlflow.tracking import MlflowClient

    write_suite(tmp_path / "s.yaml", """
        suite: intr
        experiments:
          - {name: quick, kind: learn_kernel, iterations: 2}
          - {name: slow, kind: kernel, kernel: corr2d, variants: [loop], min_run_time_s: 60,
             sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
    """)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "s.yaml", "--out", str(tmp_path / "results"),
                             "--tracking-uri", mlflow_uri], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the first row has finished once its line is printed
        if "quick" in line:
            break
    time.sleep(3)  # let the slow row start (it times for 60 s)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    (run_dir,) = (tmp_path / "results" / "intr").iterdir()
    assert f"interrupted (Ctrl-C): 1 finished rows are in {run_dir}" in err and "Traceback" not in err
    assert "its open MLflow runs ended KILLED" in err
    assert f"python -m harness run s.yaml --resume {run_dir} --tracking-uri {mlflow_uri}" in err
    assert results.load(run_dir).experiment.tolist() == ["quick"]
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("intr").experiment_id])
    statuses = {r.info.run_name: r.info.status for r in runs}
    assert statuses[run_dir.name] == "KILLED"
    assert statuses["slow/loop/in=8x8 k=2x2"] == "KILLED" and statuses["quick/sgd/X=6x8 K=1x2"] == "FINISHED"


def test_resume_reruns_only_unfinished_rows_and_keeps_speedups_against_kept_baselines(tmp_path):
    from harness.run.runner import run_suite
    from harness.suite import load_suite
    from harness.run.null import NullTracker

    path = write_suite(tmp_path / "s.yaml", """
        suite: res
        defaults: {min_run_time_s: 0.01}
        experiments:
          - {name: c, kind: kernel, kernel: corr2d, variants: [loop, native], sizes: {input: [[6, 8]], kernel: [[2, 2]]}}
    """)
    first = run_suite(load_suite(path), device="cpu", out_root=tmp_path / "r", tracker=NullTracker())
    df = results.load(first.run_dir)
    results.save([r for r in first.rows if r["variant"] == "loop"], first.run_dir)  # "interrupted" after loop

    resumed = run_suite(load_suite(path), device="cpu", out_root=tmp_path / "r", tracker=NullTracker(),
                        resume_dir=first.run_dir)
    assert resumed.exit_code == 0 and resumed.run_dir == first.run_dir
    after = results.load(first.run_dir).set_index("variant")
    assert after.loc["loop", "started_at"] == df.set_index("variant").loc["loop", "started_at"]  # kept, not re-run
    assert after.loc["native", "speedup"] == pytest.approx(after.loc["loop", "time_median_s"]
                                                           / after.loc["native", "time_median_s"])


def test_resume_with_a_changed_suite_is_refused(tmp_path):
    write_suite(tmp_path / "s.yaml", "suite: rs\nexperiments:\n  - {name: b, kind: learn_kernel, iterations: 2}\n")
    proc = run_cli("run", "s.yaml", "--no-tracking", "--out", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "r" / "rs").iterdir()
    write_suite(tmp_path / "s.yaml", "suite: rs\nexperiments:\n  - {name: b, kind: learn_kernel, iterations: 3}\n")
    proc = run_cli("run", "s.yaml", "--no-tracking", "--out", tmp_path / "r", "--resume", run_dir, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"error: --resume {run_dir}: the suite changed since that run" in proc.stderr


JITTER_PLUGIN = '''
"""Test-only: corr2d's native variant, with a seeded random 0 or 2 ms sleep in every call."""
import random
import time

from harness.kernels import KERNELS
from harness.kernels.corr2d import native

_rng = random.Random(0)


@KERNELS.get("corr2d").variant("jittery")
def jittery(case, X, K):
    time.sleep(_rng.choice((0.0, 0.002)))
    return native(case, X, K)
'''


def test_a_kernel_whose_time_swings_is_flagged_noisy_in_results_report_and_console(tmp_path):
    (tmp_path / "jitter_plugin.py").write_text(JITTER_PLUGIN)
    write_suite(tmp_path / "s.yaml", """
        suite: noise
        defaults: {min_run_time_s: 0.06}
        experiments:
          - {name: a, kind: kernel, kernel: corr2d, variants: [jittery], sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
    """)
    os = __import__("os")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    path = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)  # the plugin, and this checkout
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "s.yaml", "--no-tracking", "--out", "results"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env | {"PYTHONPATH": path, "HARNESS_PLUGINS": "jitter_plugin"})
    assert proc.returncode == 0, proc.stderr
    assert "1 rows, 0 failed or diverged, 1 noisy (IQR > 10% of the median" in proc.stdout
    assert "noisy (IQR" in proc.stderr  # the row's own console line
    (run_dir,) = (tmp_path / "results" / "noise").iterdir()
    (row,) = results.load(run_dir).itertuples()
    assert row.noisy and row.time_iqr_s > 0.1 * row.time_median_s and row.threads == 1  # one thread by default
    report = (run_dir / "report.md").read_text()
    assert "**1 noisy** (IQR over 10% of the median)" in report and " **noisy** |" in report
    assert "- **Noisy (1 row):**\n  - `a` jittery in=8x8 k=2x2: IQR " in report  # in the headline too
    env_json = json.loads((run_dir / "env.json").read_text())
    assert len(env_json["load_avg_start"]) == len(env_json["load_avg_end"]) == 3
    assert "- load average (1, 5, 15 min): " in report
