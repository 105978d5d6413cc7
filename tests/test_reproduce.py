"""`python -m harness reproduce RUN`, as a user runs it: a real smoke run (LeNet on the shipped sample,
strict mode) logged into a real MLflow SQLite store, reproduced from its run directory and from its
MLflow run id; a run whose recorded seed or data sample was changed reports `different` with the
cause; bad input is exit 2 with nothing created. Also: a run's saved suite.yaml is itself a suite."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_cli, write_suite, store_copy

from harness.suite import load_suite
from harness.views import verdict


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, _migrated_store):
    """(run directory, tracking URI, MLflow parent run id) of `run suites/smoke.yaml -k lenet`."""
    root = tmp_path_factory.mktemp("reproduce")
    uri = store_copy(_migrated_store, root / "mlflow.db")
    proc = run_cli("run", REPO / "suites/smoke.yaml", "-k", "lenet", "--out", root / "results", "--tracking-uri", uri)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (root / "results" / "smoke").iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    return run_dir, uri, state["parent_run_id"]


def _new_runs(out: Path, before: set = frozenset()) -> list[Path]:
    return sorted(p for p in (out / "smoke").iterdir() if p not in before) if (out / "smoke").is_dir() else []


def test_a_strict_smoke_run_reproduces_bitwise_into_a_new_run_that_names_it(recorded):
    run_dir, uri, parent = recorded
    out = run_dir.parents[1]
    before = set(_new_runs(out))
    proc = run_cli("reproduce", run_dir, "--tracking-uri", uri, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fingerprint = pd.read_csv(run_dir / "results.csv")["fingerprint"].iloc[0]
    assert f"lenet       strict  bitwise identical: fingerprint {fingerprint}" in proc.stdout
    assert "1 of 1 strict experiment(s) reproduced bitwise" in proc.stdout
    (new,) = _new_runs(out, before)
    assert new.name != run_dir.name and f"new run: {new}" in proc.stdout
    env = json.loads((new / "env.json").read_text())
    assert env["reproduces"] == {"run_id": run_dir.name, "run_dir": str(run_dir.resolve()), "mlflow_run_id": parent}
    assert yaml.safe_load((new / "suite.yaml").read_text())["experiments"] == \
        yaml.safe_load((run_dir / "suite.yaml").read_text())["experiments"]
    assert pd.read_csv(new / "results.csv")["fingerprint"].iloc[0] == fingerprint

    from mlflow.tracking import MlflowClient

    new_parent = json.loads((new / "state.json").read_text())["parent_run_id"]
    tags = MlflowClient(tracking_uri=uri).get_run(new_parent).data.tags
    assert tags["harness.reproduces"] == run_dir.name
    assert tags["harness.reproduces.mlflow_run_id"] == parent


def _copy(run_dir: Path, tmp_path: Path, old: str, new: str) -> Path:
    """The recorded run with one recorded setting changed in its suite.yaml: the run now says it
    was made with a setting its results were not made with."""
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    text = (copy / "suite.yaml").read_text()
    assert text.count(old) == 1
    (copy / "suite.yaml").write_text(text.replace(old, new))
    return copy


@pytest.mark.parametrize("old, new, cause", [
    ("  seed: 0\n", "  seed: 1\n", "differs: seed: 0 -> 1"),
    ("  train_limit: 512\n", "  train_limit: 256\n", "differs: data digest: "),
])
def test_a_changed_seed_or_data_sample_is_different_with_its_cause(recorded, tmp_path, old, new, cause):
    run_dir, _, _ = recorded
    copy = _copy(run_dir, tmp_path, old, new)
    proc = run_cli("reproduce", copy, "--no-tracking", "--out", tmp_path / "out", "--epochs", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "lenet       strict  different: val_acc " in proc.stdout
    assert cause in proc.stdout
    assert "differs: epochs" not in proc.stdout  # --epochs 1: compared at epoch 1, not a cause
    assert "0 of 1 strict experiment(s) reproduced bitwise" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_an_mlflow_run_id_reproduces_from_the_store_also_without_the_run_directory(recorded, tmp_path):
    run_dir, uri, parent = recorded
    child = json.loads((run_dir / "state.json").read_text())["children"]["lenet/lenet/28x28"]
    proc = run_cli("reproduce", child, "--tracking-uri", uri, "--out", tmp_path / "a", "--epochs", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"reproducing smoke run {run_dir.name} ({run_dir})" in proc.stdout
    first = json.loads(pd.read_csv(run_dir / "results.csv")["epoch_fingerprints"].iloc[0])[0]
    assert f"lenet       strict  bitwise identical: fingerprint {first} after epoch 1 of the recorded 2" in proc.stdout
    hidden = run_dir.with_name(run_dir.name + ".elsewhere")
    run_dir.rename(hidden)  # as on another machine: read from the run's MLflow artifacts
    try:
        proc = run_cli("reproduce", parent, "--tracking-uri", uri, "--out", tmp_path / "b", "--epochs", "1",
                       "--no-tracking")
    finally:
        hidden.rename(run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bitwise identical" in proc.stdout
    (new,) = _new_runs(tmp_path / "b")
    assert json.loads((new / "env.json").read_text())["reproduces"]["run_dir"] == str(run_dir)


def _cli_threads(threads: int, *args) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` with torch on `threads` CPU threads."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": str(threads)}
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_reproduce_epochs_n_is_bitwise_only_when_the_weights_after_epoch_n_are_equal(tmp_path):
    """Recorded for 3 epochs on 1 thread, reproduced for 1: on 1 thread the epoch-1 fingerprints are
    equal (bitwise identical); on 2 threads the epoch-1 losses can be bit-equal while the weights are
    not (another summation order), and the verdict follows the weights, listing the thread change."""
    out = tmp_path / "results"
    proc = _cli_threads(1, "run", REPO / "suites/smoke.yaml", "-k", "lenet", "--set", "epochs=3", "--no-tracking",
                        "--out", out)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (out / "smoke").iterdir()
    row = pd.read_csv(run_dir / "results.csv").iloc[0]
    prints = json.loads(row["epoch_fingerprints"])
    assert len(prints) == 3 and prints[-1] == row["fingerprint"] and len(set(prints)) == 3

    same = _cli_threads(1, "reproduce", run_dir, "--epochs", "1", "--no-tracking", "--out", tmp_path / "a")
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"bitwise identical: fingerprint {prints[0]} after epoch 1 of the recorded 3" in same.stdout
    assert "compared: weights: the fingerprint after epoch 1 of the recorded 3" in same.stdout
    assert "compared: numbers: every loss and accuracy of epoch 1 (steps.csv)" in same.stdout
    assert "differs: no recorded setting" in same.stdout

    other = _cli_threads(2, "reproduce", run_dir, "--epochs", "1", "--no-tracking", "--out", tmp_path / "b")
    (new,) = (tmp_path / "b" / "smoke").iterdir()
    now = json.loads(pd.read_csv(new / "results.csv")["epoch_fingerprints"].iloc[0])
    assert len(now) == 1
    assert "differs: CPU threads: 1 -> 2" in other.stdout  # listed whatever the verdict
    if now[0] == prints[0]:  # the same weights after all (a machine where 2 threads sum alike)
        assert other.returncode == 0 and "bitwise identical" in other.stdout, other.stdout
    else:
        assert other.returncode == 1, other.stdout + other.stderr
        assert "bitwise identical" not in other.stdout
        assert f"the weights differ (fingerprint after epoch 1 of the recorded 3: {prints[0]} -> {now[0]})" \
            in other.stdout
        assert "0 of 1 strict experiment(s) reproduced bitwise" in other.stdout


BROKEN_PLUGIN = """
from harness.kernels import KERNELS


@KERNELS.get("corr2d").variant("broken")
def broken(case, X, K):
    raise RuntimeError("broken on purpose")
"""


def test_failed_and_diverged_rows_reproduced_are_failures_as_recorded_not_timings(tmp_path):
    """A kernel experiment failing both times and a learned kernel diverging both times: failed and
    diverged as recorded (exit 1), not "every row ran as recorded; no timed rows", and no claim that a
    recorded difference explains a divergence."""
    (tmp_path / "broken_plugin.py").write_text(BROKEN_PLUGIN)
    write_suite(tmp_path / "fd.yaml", """
        suite: fd
        defaults: {min_run_time_s: 0.01, threads: 1}
        experiments:
          - {name: k, kind: kernel, kernel: corr2d, variants: [broken], sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
          - {name: hot, kind: learn_kernel, lr: 1e6}
    """)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
        "HARNESS_PLUGINS": "broken_plugin", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    proc = cli("run", "fd.yaml", "--no-tracking", "--device", "cpu", "--out", tmp_path / "r")
    assert proc.returncode == 1 and "2 rows, 2 failed or diverged" in proc.stdout, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "r" / "fd").iterdir()
    proc = cli("reproduce", run_dir, "--no-tracking", "--out", tmp_path / "again")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "k           strict  failed as recorded: 1 of 1 row(s) failed again (broken in=8x8 k=2x2; first error: " \
           "RuntimeError: broken on purpose); no row was timed both times" in out
    assert "compared: timings: none (no row was timed both times)" in out
    assert "hot         strict  diverged as recorded: diverged again (loss became inf at iteration 4 of 10" in out
    assert "the same error as recorded" in out
    assert "no timed rows" not in out and "explains it" not in out
    assert "0 of 2 strict experiment(s) reproduced bitwise (2 failed or diverged as recorded: a failure, " \
           "not a reproduction)" in out


def test_an_interrupted_reproduce_names_its_partial_run_directory(recorded, tmp_path):
    run_dir, _, _ = recorded
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "reproduce", str(run_dir), "--no-tracking",
                             "--out", str(tmp_path / "out")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("estimate:"):  # the new run directory is made, its training about to start
            break
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    (partial,) = (tmp_path / "out" / "smoke").iterdir()
    assert f"interrupted (SIGTERM): the reproduction stopped early, no verdict: 0 finished rows are in {partial} " \
           f"(results, steps, report); run `python -m harness reproduce {run_dir}` again for one" in err
    assert "Traceback" not in err and "verdict:" not in proc.stdout.read()


def _unfinished(run_dir: Path, tmp_path: Path) -> Path:
    """The recorded run as a run stopped before its second experiment leaves it: its suite.yaml holds
    both, its results the first, its state.json `finished: false`."""
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    suite = yaml.safe_load((copy / "suite.yaml").read_text())
    later = write_suite(tmp_path / "later.yaml", "suite: l\nexperiments:\n  - {name: later, kind: learn_kernel}\n")
    suite["experiments"] += load_suite(later).resolved()["experiments"]
    (copy / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    state = json.loads((copy / "state.json").read_text()) | {"finished": False}
    (copy / "state.json").write_text(json.dumps(state))
    return copy


def test_an_unfinished_recorded_run_names_the_experiments_not_judged_and_fails_unless_only_restricts_it(
        recorded, tmp_path):
    run_dir, _, _ = recorded
    copy = _unfinished(run_dir, tmp_path)
    proc = run_cli("reproduce", copy, "--no-tracking", "--out", tmp_path / "a", "--epochs", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = ("the recorded run did not finish (its state.json says finished: false): 1 of its 2 experiment(s) "
            "never ran there and are not judged: later")
    assert f"warning: {said}; the reproduction fails (exit 1) unless --only EXPERIMENT restricts it" in proc.stderr
    assert "  later               not judged: the recorded run has no row of it" in proc.stdout
    assert "1 of 1 strict experiment(s) reproduced bitwise; 1 not judged (never run by the recorded run)" in proc.stdout
    assert f"not judged: {said}" in proc.stdout

    only = run_cli("reproduce", copy, "--no-tracking", "--out", tmp_path / "b", "--epochs", "1", "--only", "lenet")
    assert only.returncode == 0, only.stdout + only.stderr
    assert f"note: {said}; --only lenet restricts this reproduction to an experiment it recorded" in only.stdout
    assert "1 of 1 strict experiment(s) reproduced bitwise\n" in only.stdout


def test_a_merge_with_a_missing_shard_names_its_experiments_not_judged(tmp_path):
    write_suite(tmp_path / "two.yaml", """
        suite: two
        experiments:
          - {name: one, kind: learn_kernel, iterations: 3}
          - {name: two, kind: learn_kernel, iterations: 4}
    """)
    proc = run_cli("run", "two.yaml", "--shard", "0/2", "--no-tracking", "--out", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (shard,) = (tmp_path / "r" / "two").iterdir()
    merged = tmp_path / "merged"
    proc = run_cli("merge", shard, "--out", merged, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 1/2 missing
    (merged,) = {p.parent for p in merged.rglob("merge.json")}  # --out itself, or a run directory below it
    proc = run_cli("reproduce", merged, "--no-tracking", "--out", tmp_path / "again", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "one         strict  bitwise identical" in proc.stdout
    assert "  two                 not judged: the recorded run has no row of it" in proc.stdout
    assert "not judged: the recorded run is a merge of shards, 1/2 missing (its merge.json): 1 of its 2 " \
           "experiment(s) never ran there and are not judged: two" in proc.stdout


def test_bad_input_is_exit_2_with_one_message_and_nothing_created(recorded, tmp_path):
    run_dir, uri, _ = recorded
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    cases = [
        ((empty,), f"error: {empty}: not a run directory (no suite.yaml, env.json); give the directory a run printed"),
        ((run_dir / "results.csv",), f"error: {run_dir / 'results.csv'}: is a file, not a run directory"),
        (("no/such/run",), "error: no/such/run: no such run directory; give a run directory (results/<suite>/"
                           "<UTC time>-<id>), or an MLflow run id with --tracking-uri URI"),
        (("0" * 32, "--tracking-uri", uri), f"error: {'0' * 32}: not a run directory, and no MLflow run with that id "
                                            f"in {uri}"),
        ((run_dir, "--only", "lenett"), "error: --only lenett: unknown experiment 'lenett' (known: lenet); "
                                        "did you mean 'lenet'?"),
        ((run_dir, "--epochs", "3"), "error: --epochs 3: give 1 to 2, the epochs the run recorded"),
        ((run_dir, "--epochs", "0"), "error: --epochs 0: give 1 to 2"),
    ]
    import torch

    if not torch.cuda.is_available():  # a run recorded on a GPU, reproduced where there is none
        on_gpu = tmp_path / "on_gpu"
        shutil.copytree(run_dir, on_gpu)
        env = json.loads((on_gpu / "env.json").read_text()) | {"device": "cuda"}
        (on_gpu / "env.json").write_text(json.dumps(env))
        cases.append(((on_gpu,), f"error: {on_gpu}: the run was made on cuda, and this machine has no CUDA device; "
                                 f"give --device cpu to run it here"))
    for args, message in cases:
        proc = run_cli("reproduce", *args, "--out", out)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith(message), (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not out.exists(), args


def test_a_runs_saved_suite_yaml_runs_to_the_same_experiments_and_fingerprint(recorded, tmp_path):
    run_dir, _, _ = recorded
    listed = run_cli("list", run_dir / "suite.yaml")
    assert listed.returncode == 0, listed.stderr
    assert "  lenet " in listed.stdout and "1 experiments" in listed.stdout
    proc = run_cli("run", run_dir / "suite.yaml", "--no-tracking", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    (new,) = (tmp_path / "smoke").iterdir()
    assert pd.read_csv(new / "results.csv")["fingerprint"].iloc[0] == \
        pd.read_csv(run_dir / "results.csv")["fingerprint"].iloc[0]


MATRIX = """
suite: mx
defaults: {batch_size: 64, epochs: 1, dataset: fashion_mnist_sample, train_limit: 128, val_limit: 64}
experiments:
  - {name: lenet, kind: train, model: lenet, lr: 0.1}
  - {name: c, kind: kernel, kernel: corr2d, variants: [loop, native], sizes: {input: [[6, 8]], kernel: [[1, 2]]}}
matrix: {seed: [0, 1], lr: [0.1, 0.05]}
"""


@pytest.mark.parametrize("suite", ["smoke.yaml", "kernels.yaml", "training.yaml", "training-fast.yaml", "matrix"])
def test_a_resolved_suite_loads_to_the_same_experiment_ids_and_specs(suite, tmp_path):
    path = write_suite(tmp_path / "m.yaml", MATRIX) if suite == "matrix" else REPO / "suites" / suite
    for seed in (None, 7):
        original = load_suite(path, seed=seed)
        saved = tmp_path / "suite.yaml"
        saved.write_text(yaml.safe_dump(load_suite(path).resolved(), sort_keys=False))
        again = load_suite(saved, seed=seed)
        assert [(e.id, e.spec) for e in again.experiments] == [(e.id, e.spec) for e in original.experiments]
        assert again.resolved()["experiments"] == original.resolved()["experiments"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("- id: lenet[seed=0,lr=0.1]", "- id: lenet[seed=0,lr=0.1]\n  extra: 1"),
     "experiments[0].extra: unknown field 'extra'"),
    (lambda t: t.replace("id: lenet[seed=0,lr=0.05]", "id: lenet[seed=0,lr=0.1]"),
     "experiments[1].id: duplicate experiment id 'lenet[seed=0,lr=0.1]' (first used by experiments[0])"),
    (lambda t: t.replace("id: c[seed=0]", "id: d[seed=0]"),
     "experiments[4].id: 'd[seed=0]' is not the experiment's name ('c') or the name with its matrix point"),
    (lambda t: t + "matrix: {seed: [3]}\n", "experiments[0].id: an experiment id is read only from a resolved suite"),
])
def test_a_resolved_suite_with_a_wrong_id_is_refused(tmp_path, edit, message):
    saved = tmp_path / "suite.yaml"
    saved.write_text(edit(yaml.safe_dump(load_suite(write_suite(tmp_path / "m.yaml", MATRIX)).resolved(),
                                         sort_keys=False)))
    proc = run_cli("list", saved)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def _rows(**kw):
    base = {"experiment": "lenet", "kind": "train", "status": "ok", "determinism": "strict", "epochs": 2, "seed": 0,
            "fingerprint": "aaaa", "val_acc": 0.5, "dataset_digest": "d1", "device": "cpu", "threads": 2}
    return pd.DataFrame([base | kw])


def _trace(scale: float = 1.0):
    return pd.DataFrame([{"experiment": "lenet", "step": e, "metric": k, "value": v * scale}
                         for e in (1, 2) for k, v in (("train_loss", 2.0 / e), ("train_acc", 0.25 * e),
                                                      ("val_loss", 2.1 / e), ("val_acc", 0.2 * e))])


def test_verdicts_bitwise_tolerance_different_and_fast_mode():
    env = {"torch": "2.0", "cpu_model": "X"}
    same = verdict.judge(_rows(), _rows(), _trace(), _trace(), env, env)
    assert same[0].verdict == "bitwise identical" and same[0].reproduced and not same[0].causes
    near = verdict.judge(_rows(), _rows(fingerprint="bbbb"), _trace(), _trace(1 + 1e-8), env, env | {"torch": "2.1"})
    assert near[0].verdict == "equal within tolerance" and "within 1e-06 relative" in near[0].detail
    assert near[0].causes == ["torch: 2.0 -> 2.1"] and verdict.exit_code(near, False) == 1
    far = verdict.judge(_rows(), _rows(fingerprint="bbbb", threads=4), _trace(), _trace(1.01), env, env)
    assert far[0].verdict == "different" and far[0].causes == ["CPU threads: 2 -> 4"]
    fast = verdict.judge(_rows(determinism="fast"), _rows(determinism="fast", fingerprint="bbbb"), _trace(),
                         _trace(1.01), env, env)
    assert fast[0].verdict == "different" and not fast[0].counted and verdict.exit_code(fast, False) == 0
    assert any(c.startswith("fast mode") for c in fast[0].causes)
    assert far[0].compared[0].startswith("weights: the fingerprint after epoch 2")


def test_verdict_of_a_shorter_reproduction_follows_the_epoch_n_weights():
    """`reproduce --epochs 1` of a 2-epoch run: bit-equal epoch-1 numbers are not a bitwise reproduction
    unless the epoch-1 fingerprints are equal; a run recorded without them gets no weight comparison."""
    env = {"torch": "2.0"}
    old = _rows(epoch_fingerprints='["e1", "aaaa"]')
    one_epoch = _trace()[lambda t: t["step"] == 1]
    same = verdict.judge(old, _rows(epochs=1, fingerprint="e1", epoch_fingerprints='["e1"]'), _trace(), one_epoch,
                         env, env)
    assert same[0].verdict == "bitwise identical" and same[0].reproduced
    assert same[0].detail == "fingerprint e1 after epoch 1 of the recorded 2" and not same[0].causes
    moved = verdict.judge(old, _rows(epochs=1, fingerprint="x1", epoch_fingerprints='["x1"]', threads=4), _trace(),
                          one_epoch, env, env)
    assert moved[0].verdict == "equal within tolerance" and not moved[0].reproduced
    assert "equal bit for bit, but the weights differ (fingerprint after epoch 1 of the recorded 2: e1 -> x1)" \
        in moved[0].detail
    assert moved[0].causes == ["CPU threads: 2 -> 4"] and verdict.exit_code(moved, False) == 1
    older = verdict.judge(_rows(), _rows(epochs=1, fingerprint="e1"), _trace(), one_epoch, env, env)
    assert older[0].verdict == "equal within tolerance" and not older[0].reproduced
    assert older[0].compared[0].startswith("weights: not compared (the run recorded no fingerprint after epoch 1")
    assert "the weights were not compared" in older[0].detail
    text = verdict.format_verdicts(older, "old", "new")
    assert "bitwise" not in text.splitlines()[1] and "0 of 1 strict experiment(s) reproduced bitwise" in text
    resumed = _rows(epoch_fingerprints='[null, "aaaa"]')  # resumed after epoch 1 from an older checkpoint
    (v,) = verdict.judge(resumed, _rows(epochs=1, fingerprint="e1"), _trace(), one_epoch, env, env)
    assert v.verdict == "equal within tolerance" and "or resumed from an older checkpoint" in v.compared[0]
    (v,) = verdict.judge(_rows(fingerprint=None), _rows(), _trace(), _trace(), env, env)
    assert v.verdict == "equal within tolerance"
    assert v.compared[0] == "weights: not compared (the run recorded no fingerprint after epoch 2: its row has none)"


def test_failed_rows_are_failures():
    env = {"torch": "2.0"}
    failed = verdict.judge(_rows(), _rows(status="failed", error="boom"), _trace(), None, env, env)
    assert failed[0].verdict == "different" and "recorded ok, now failed (boom)" in failed[0].detail
    boom = _rows(status="diverged", error="loss became nan in epoch 2")
    again = verdict.judge(boom, boom, _trace(), _trace(), env, env)
    assert again[0].verdict == "diverged as recorded" and not again[0].reproduced
    assert again[0].detail == "diverged again (loss became nan in epoch 2); the same error as recorded; " \
                              "the weights bitwise identical" and verdict.exit_code(again, False) == 1
    other = verdict.judge(boom, boom.assign(fingerprint="bbbb"), _trace(), _trace(), env, env)
    assert other[0].detail.endswith("; fingerprint aaaa -> bbbb")
    text = verdict.format_verdicts(again, "old", "new")
    assert "explains it" not in text and "differs: no recorded setting" in text
    same = verdict.judge(_rows(), _rows(), _trace(), _trace(), env, env)
    assert verdict.exit_code(same, rerun_failed=True) == 1


def test_verdicts_of_kernel_timings_and_learned_kernels():
    def kernel(**kw):
        return {"experiment": "c", "kind": "kernel", "status": "ok", "determinism": "strict", "variant": "loop",
                "size": "s", "time_median_s": 1.0} | kw

    old = pd.DataFrame([kernel(), kernel(variant="native", time_median_s=0.1)])
    new = pd.DataFrame([kernel(time_median_s=1.1), kernel(variant="native", time_median_s=0.11)])
    (v,) = verdict.judge(old, new, None, None, {}, {})
    assert v.verdict == "timings" and "median time +10%" in v.detail and not v.counted and not v.causes
    new.loc[1, "status"] = "failed"
    (v,) = verdict.judge(old, new, None, None, {}, {})
    assert v.verdict == "different" and "native s: ok -> failed" in v.detail and verdict.exit_code([v], False) == 1
    learned = {"experiment": "e", "kind": "learn_kernel", "status": "ok", "determinism": "strict", "seed": 0,
               "learned_kernel": "[[1.0, -1.0]]", "loss_final": 0.04}
    (v,) = verdict.judge(pd.DataFrame([learned]), pd.DataFrame([learned]), None, None, {}, {})
    assert v.verdict == "bitwise identical" and v.reproduced
    (v,) = verdict.judge(pd.DataFrame([learned]), pd.DataFrame([learned | {"loss_final": 0.05, "seed": 1}]),
                         None, None, {}, {})
    assert v.verdict == "different" and v.causes == ["seed: 0 -> 1"] and verdict.exit_code([v], False) == 1
