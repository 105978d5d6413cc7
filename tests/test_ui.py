"""`harness ui`: the MLflow UI on 127.0.0.1 against the store `run` wrote, answering /health and
MLflow's REST API, laid out for the UI's compare view; stopped by Ctrl-C."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import REPO, run_cli, write_suite

SUITE = """
suite: uitest
description: kernels and two models for the UI test
defaults: {min_run_time_s: 0.01, batch_size: 32, epochs: 2, dataset: fashion_mnist_sample, train_limit: 64, val_limit: 32}
experiments:
  - {name: corr, kind: kernel, kernel: corr2d, variants: [loop, vectorized, native], sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
  - {name: lenet, kind: train, model: lenet, lr: 0.1}
  - {name: vgg_tiny, kind: train, model: vgg, model_args: {arch: [[1, 8], [1, 16]]}, lr: 0.01}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, (json.loads(raw) if path.startswith("/api") else raw.decode())


def wait_healthy(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"harness ui exited with {proc.returncode}"
        try:
            if call(port, "/health")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"/health did not answer 200 within {timeout_s} s")


def test_ui_serves_the_store_run_wrote_and_stops_on_ctrl_c(tmp_path, mlflow_uri):
    # kernel rows and two models' training runs (on the shipped sample: compare view, metric by metric)
    write_suite(tmp_path / "s.yaml", SUITE)
    ran = run_cli("run", tmp_path / "s.yaml", "--out", tmp_path / "results", "--tracking-uri", mlflow_uri)
    assert ran.returncode == 0, ran.stderr

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "ui", "--port", str(port), "--tracking-uri", mlflow_uri],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith(f"MLflow UI: http://127.0.0.1:{port}  (store {mlflow_uri})")
        newest = proc.stdout.readline()  # the experiment whose latest run started last: this test's
        wait_healthy(port, proc)
        status, found = call(port, "/api/2.0/mlflow/experiments/search", {"max_results": 100})
        assert status == 200
        (exp,) = [e for e in found["experiments"] if e["name"] == "uitest"]
        assert newest == f"newest experiment 'uitest': http://127.0.0.1:{port}/#/experiments/{exp['experiment_id']}/runs\n"
        # MLflow 3 opens a model-development experiment on its runs (not its GenAI traces page)
        tags = {t["key"]: t["value"] for t in exp["tags"]}
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        assert tags["mlflow.note.content"] == "kernels and two models for the UI test"
        runs = call(port, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})[1]["runs"]
        children = [r for r in runs if any(t["key"] == "mlflow.parentRunId" for t in r["data"]["tags"])]
        kernels = [r for r in children if r["info"]["run_name"].startswith("corr/")]
        assert sorted(r["info"]["run_name"] for r in kernels) == [
            "corr/loop/in=8x8 k=2x2", "corr/native/in=8x8 k=2x2", "corr/vectorized/in=8x8 k=2x2"]
        # side by side: the variants of one size carry the same metric and param keys, differing in `variant`
        keys = {frozenset(m["key"] for m in r["data"]["metrics"]) for r in kernels}
        assert len(keys) == 1 and {"time_median_s", "speedup", "gflops"} <= next(iter(keys))
        assert len({frozenset(p["key"] for p in r["data"]["params"]) for r in kernels}) == 1
        assert {p["value"] for r in kernels for p in r["data"]["params"] if p["key"] == "variant"} == {
            "loop", "vectorized", "native"}
        trains = [r for r in children if not r["info"]["run_name"].startswith("corr/")]
        assert sorted(r["info"]["run_name"] for r in trains) == ["lenet/lenet/28x28", "vgg_tiny/vgg/28x28"]
        for r in trains:  # the models line up metric by metric: same keys, step = epoch
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "epoch_time_s"):
                history = call(port, f"/api/2.0/mlflow/metrics/get-history?run_id={r['info']['run_id']}"
                                     f"&metric_key={key}")[1]["metrics"]
                assert sorted(m["step"] for m in history) == [1, 2], (r["info"]["run_name"], key)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "MLflow UI stopped" in out
    with socket.socket() as s:  # the server went with it
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_ui_without_a_store_or_on_a_busy_port_exits_2(tmp_path, mlflow_uri):
    proc = run_cli("ui", "--results", tmp_path / "nothing-here")
    assert proc.returncode == 2 and "no MLflow store yet; run a suite first" in proc.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("ui", "--port", port, "--tracking-uri", mlflow_uri)
    assert proc.returncode == 2 and f"127.0.0.1:{port} is in use; pick another port with --port" in proc.stderr


@pytest.mark.parametrize("uri", ["http://example.org:5000"])
def test_ui_refuses_a_uri_that_is_already_a_server(uri):
    proc = run_cli("ui", "--tracking-uri", uri)
    assert proc.returncode == 2 and "is already a tracking server" in proc.stderr
