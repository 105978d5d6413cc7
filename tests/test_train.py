"""Training end to end on suites/smoke.yaml (real Fashion-MNIST: the sample shipped in the package):
strict determinism, resume equivalence after a real interruption, an unloadable checkpoint,
divergence, missing data, the sample's limits, and what MLflow holds."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from conftest import REPO, run_cli, write_suite, store_copy

from harness.run import results


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, _migrated_store):
    """suites/smoke.yaml twice with seed 0 (tracked), and its LeNet with seed 1. It trains on the
    sample shipped in the package: no data directory is needed (one run points --data-dir nowhere)."""
    tmp = tmp_path_factory.mktemp("smoke")
    uri = store_copy(_migrated_store, tmp / "mlflow.db")
    runs = {}
    for name, extra in (("a", []), ("b", ["--data-dir", tmp / "nowhere"]), ("seed1", ["--seed", "1", "-k", "lenet"])):
        proc = run_cli("run", REPO / "suites" / "smoke.yaml", "--out", tmp / name,
                       "--tracking-uri", uri, *extra, cwd=tmp)
        assert proc.returncode == 0, proc.stderr
        (run_dir,) = (tmp / name / "smoke").iterdir()
        runs[name] = results.load(run_dir).set_index("experiment")
        runs[name + "_dir"] = run_dir
        runs[name + "_stdout"] = proc.stdout
    runs["uri"] = uri
    return runs


def test_two_seeded_runs_give_equal_fingerprints_and_another_seed_differs(smoke_runs):
    a, b = smoke_runs["a"], smoke_runs["b"]
    assert list(a.index) == ["lenet", "vgg_small", "resnet18", "resnext"]
    assert (a.status == "ok").all()
    assert a.fingerprint.str.len().eq(16).all()
    assert a.fingerprint.to_dict() == b.fingerprint.to_dict()
    assert a.val_acc.to_dict() == b.val_acc.to_dict()
    assert smoke_runs["seed1"].loc["lenet", "fingerprint"] != a.loc["lenet", "fingerprint"]


def test_training_rows_carry_every_documented_number(smoke_runs):
    a = smoke_runs["a"]
    for col in ("train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "images_per_s", "epoch_time_s",
                "wall_s", "train_time_s", "peak_mem_bytes", "peak_rss_bytes", "params", "dataset_digest",
                "flops", "achieved_tflops"):
        assert a[col].notna().all(), col
    assert a.mfu.isna().all()  # a CPU has no peak in the table: no MFU rather than a wrong one
    assert (a.achieved_tflops == a.flops * a.images_per_s / 1e12).all()
    assert (a.val_acc <= a.best_val_acc).all() and a.val_acc.between(0, 1).all()
    assert list(a.resize) == ["28x28", "32x32", "32x32", "32x32"] and set(a.epochs) == {2}
    assert a.loc["lenet", "params"] == 61_706  # LeNet-5 as in d2l 7.6
    assert a.dataset_digest.nunique() == 1 and set(a.determinism) == {"strict"}
    report = (smoke_runs["a_dir"] / "report.md").read_text()
    assert "## Training" in report and "| lenet " in report


def test_mlflow_has_per_epoch_metrics_the_plot_and_the_dataset(smoke_runs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(smoke_runs["uri"])
    a = smoke_runs["a"]
    for exp_id, row in a.iterrows():
        run = client.get_run(row.mlflow_run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == f"{exp_id}/{row.variant}/{row['size']}"
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "epoch_time_s"):
            history = client.get_metric_history(row.mlflow_run_id, key)
            assert sorted(m.step for m in history) == [1, 2], key  # same keys, step = epoch, every model
        assert run.data.metrics["final_val_acc"] == pytest.approx(row.val_acc)
        assert f"{exp_id}.png" in {f.path for f in client.list_artifacts(row.mlflow_run_id)}
        (dataset,) = run.inputs.dataset_inputs
        assert dataset.dataset.name == "fashion_mnist_sample" and dataset.dataset.digest == row.dataset_digest
        assert json.loads(row.config)["dataset"] == "fashion_mnist_sample"
        assert run.data.params["dataset"] == "fashion_mnist_sample"
    assert (smoke_runs["a_dir"] / "plots" / "lenet.png").stat().st_size > 1000


def test_the_smoke_report_says_its_accuracy_is_a_pipeline_check_and_names_every_model(smoke_runs):
    from harness.suite import load_suite

    note = " ".join(load_suite(REPO / "suites" / "smoke.yaml").note.split())
    assert "pipeline check" in note and "sigmoid LeNet" in note
    assert smoke_runs["a_stdout"].splitlines()[-1] == f"note: {note}"  # the last thing `run` says
    head = (smoke_runs["a_dir"] / "report.md").read_text().split("## Details")[0]
    assert f"- **Note:** {note}" in head
    assert "- **Ran:** suite `smoke` (the four d2l networks" in head and "4 experiments, 4 rows" in head
    for exp in ("lenet", "vgg_small", "resnet18", "resnext"):
        (line,) = [x for x in head.splitlines() if x.startswith(f"- `{exp}`")]
        assert " after 2 epochs" in line and " img/s" in line, line
    assert "- **Failed or noisy rows:** none" in head


def test_the_smoke_page_embeds_every_training_plot_and_loads_offline(smoke_runs):
    from browser import find_chromium, open_static_page

    run_dir = smoke_runs["a_dir"]
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    pngs = sorted((run_dir / "plots").rglob("*.png"))
    assert {"lenet.png", "vgg_small.png", "resnet18.png", "resnext.png"} <= {p.name for p in pngs}
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert "http://" not in html and "https://" not in html
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    page = open_static_page(chromium, run_dir / "report.html")
    assert page["errors"] == [] and all(u.startswith(("file://", "data:")) for u in page["urls"]), page
    assert len(page["images"]) == len(pngs) and all(width > 0 for _, width in page["images"])
    assert "pipeline check" in page["text"]


def test_an_interrupted_run_resumes_to_the_same_fingerprint(smoke_runs, tmp_path, mlflow_uri):
    """-k l selects lenet and vgg_small (dropout: the RNG state must survive the checkpoint).
    Ctrl-C arrives once vgg_small has finished its first of two epochs."""
    from mlflow.tracking import MlflowClient

    args = ["run", str(REPO / "suites" / "smoke.yaml"), "-k", "l", "--out", str(tmp_path / "r"),
            "--tracking-uri", mlflow_uri]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "vgg_small epoch 1/2" in line:
            break
    proc.send_signal(signal.SIGINT)
    proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    (run_dir,) = (tmp_path / "r" / "smoke").iterdir()
    assert list(results.load(run_dir).experiment) == ["lenet"]

    resumed = run_cli(*args, "--resume", run_dir, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "vgg_small: resumed after epoch 1" in resumed.stderr
    assert "lenet epoch" not in resumed.stderr  # finished before the interruption: not run again
    df = results.load(run_dir).set_index("experiment")
    uninterrupted = smoke_runs["a"]
    for exp_id in ("lenet", "vgg_small"):
        assert df.loc[exp_id, "fingerprint"] == uninterrupted.loc[exp_id, "fingerprint"], exp_id

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert len(runs) == 3  # one parent, two children: continued, not duplicated
    assert {r.info.status for r in runs} == {"FINISHED"}
    vgg = client.get_metric_history(df.loc["vgg_small", "mlflow_run_id"], "val_acc")
    assert sorted(m.step for m in vgg) == [1, 2]


def test_a_diverging_model_is_recorded_and_the_suite_goes_on(tmp_path, data_dir):
    write_suite(tmp_path / "nan.yaml", """
        suite: nan
        defaults: {train_limit: 256, val_limit: 128, batch_size: 64, epochs: 3}
        experiments:
          - {name: absurd, kind: train, model: vgg, lr: 1.0e+6, resize: [32, 32]}  # ReLU: weights overflow
          - {name: fine, kind: train, model: lenet, lr: 0.1, epochs: 1}
    """)
    proc = run_cli("run", "nan.yaml", "--no-tracking", "--data-dir", data_dir, "--out", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 1
    (run_dir,) = (tmp_path / "r" / "nan").iterdir()
    df = results.load(run_dir).set_index("experiment")
    assert df.loc["absurd", "status"] == "diverged"
    assert df.loc["absurd", "error"] in {"loss became nan in epoch 1", "loss became inf in epoch 1"}
    assert df.loc["fine", "status"] == "ok"
    assert "2 rows, 1 failed or diverged" in proc.stdout


def test_missing_data_exits_2_saying_where_the_files_go(tmp_path):
    write_suite(tmp_path / "full.yaml", "suite: full\nexperiments:\n  - {name: m, kind: train, model: lenet}\n")
    proc = run_cli("run", "full.yaml", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{tmp_path / 'nowhere' / 'FashionMNIST' / 'raw' / 'train-images-idx3-ubyte.gz'}" in proc.stderr
    assert "--data-dir" in proc.stderr and "HARNESS_DATA_DIR" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_limits_beyond_the_shipped_sample_are_refused_at_load_time(tmp_path):
    write_suite(tmp_path / "s.yaml", """
        suite: s
        defaults: {dataset: fashion_mnist_sample}
        experiments:
          - {name: ok, kind: train, model: lenet, train_limit: 2000, val_limit: 1000}
          - {name: big, kind: train, model: lenet, train_limit: 2001, val_limit: 5000}
    """)
    for command in ("list", "run"):
        proc = run_cli(command, "s.yaml", *(["--out", tmp_path / "r"] if command == "run" else []), cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert ("s.yaml: experiments[1].train_limit: 2001: dataset fashion_mnist_sample has 2,000 training images "
                "(use at most 2000, or dataset: fashion_mnist for the full set)") in proc.stderr
        assert "s.yaml: experiments[1].val_limit: 5000: dataset fashion_mnist_sample has 1,000 validation images" in proc.stderr
        assert "experiments[0]" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_an_unloadable_checkpoint_on_resume_is_an_input_error(tmp_path):
    """A run killed after its checkpoint was written but before its row (the loop saves the
    checkpoint first): no results.parquet yet. Its last.pt is then damaged three ways."""
    import torch

    write_suite(tmp_path / "one.yaml", """
        suite: one
        experiments:
          - {name: lenet, kind: train, model: lenet, dataset: fashion_mnist_sample, epochs: 1, train_limit: 64, val_limit: 32}
    """)
    args = ["run", "one.yaml", "--no-tracking", "--out", tmp_path / "r"]
    assert run_cli(*args, "--keep-checkpoints", cwd=tmp_path).returncode == 0
    (run_dir,) = (tmp_path / "r" / "one").iterdir()

    def killed_before_its_row():  # the finished row removed: the experiment is unfinished again
        for name in ("results.parquet", "results.csv"):
            (run_dir / name).unlink(missing_ok=True)

    ckpt = run_dir / "checkpoints" / "lenet" / "last.pt"
    good = ckpt.read_bytes()
    for damage in ("truncated", "garbage", "not a checkpoint"):
        killed_before_its_row()
        if damage == "truncated":
            ckpt.write_bytes(good[:len(good) // 2])
        elif damage == "garbage":
            ckpt.write_bytes(b"\x00garbage" * 100)
        else:
            torch.save({"weights": torch.zeros(3)}, ckpt)
        proc = run_cli(*args, "--resume", run_dir, cwd=tmp_path)
        assert proc.returncode == 2, (damage, proc.stderr)
        assert "Traceback" not in proc.stderr, damage
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        assert line.startswith(f"error: {ckpt}: "), line
        assert line.endswith("delete it to restart that experiment from scratch, or start a new run"), line
        assert ("not a checkpoint of this harness" in line) == (damage == "not a checkpoint"), line

    killed_before_its_row()
    ckpt.unlink()  # as the message says: that experiment restarts from scratch
    proc = run_cli(*args, "--resume", run_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(results.load(run_dir).status) == ["ok"]


def test_speed_options_are_refused_in_strict_mode(tmp_path):
    write_suite(tmp_path / "s.yaml", "suite: s\nexperiments:\n  - {name: m, kind: train, model: lenet, precision: bf16}\n")
    proc = run_cli("list", "s.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert ("s.yaml: experiments[0].precision: 'bf16' trades determinism for speed: set `determinism: fast` "
            "to use it (strict allows only 'fp32')") in proc.stderr


def test_unknown_model_and_model_args_are_refused(tmp_path):
    write_suite(tmp_path / "s.yaml", "suite: s\nexperiments:\n  - {name: m, kind: train, model: resnet19}\n"
                "  - {name: v, kind: train, model: vgg, model_args: {archs: [[1, 8]]}}\n")
    proc = run_cli("list", "s.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "s.yaml: experiments[0].model: unknown model 'resnet19'" in proc.stderr
    assert "did you mean 'resnet18'?" in proc.stderr
    assert "s.yaml: experiments[1].model_args.archs: unknown argument of model vgg: 'archs'" in proc.stderr


def test_summary_prints_layers_params_and_flops():
    proc = run_cli("summary", "lenet", "--input", "1,1,28,28")
    assert proc.returncode == 0, proc.stderr
    assert "Conv2d" in proc.stdout and "61,706" in proc.stdout
    bad = run_cli("summary", "lenet", "--input", "1,28,28")
    assert bad.returncode == 2 and "--input 1,28,28: give four positive integers N,C,H,W" in bad.stderr


def test_every_experiment_is_compiled_afresh_past_dynamos_recompile_limit(monkeypatch):
    """Each experiment's step shares one code object; without a reset, the ninth compiled
    (model, batch size) pair ran eager silently. Here with the limit at 1: the second model."""
    import types

    import torch
    from torch._dynamo.utils import counters

    from harness.train.loop import _compiled_step

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    spec = types.SimpleNamespace(compile="default", precision="fp32")
    graphs = []
    for _ in range(2):
        model = torch.nn.Linear(4, 3)
        step = _compiled_step(model, torch.optim.SGD(model.parameters(), lr=0.1), spec)
        step(torch.randn(5, 4), torch.randint(0, 3, (5,)), 5)  # x, y, the global batch's length
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] > graphs[0] > 0
