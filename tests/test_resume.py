"""`run --resume` checks what the run was made under (harness.run.resume): the device and its model,
CPU threads on CPU, the git commit and torch, and the data an interrupted training's checkpoint was
trained on. A resume under anything else is refused, exit 2, naming each difference and the command
that matches, with nothing changed; the same settings resume as before. World size: tests/test_ddp.py."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, write_suite
from test_data import write_fashion_mnist

SUITE = """
    suite: rs
    defaults: {epochs: 1, batch_size: 16, train_limit: 50, val_limit: 20, seed: 0}
    experiments:
      - {name: a, kind: train, model: lenet, lr: 0.1}
"""


def harness(*args, threads: int, cwd):
    """`OMP_NUM_THREADS=threads python -m harness ARGS` in a real process."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def tree(path):
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The suite run once at 1 CPU thread on a small data set, its checkpoint kept: (tmp, suite, data, run dir)."""
    tmp = tmp_path_factory.mktemp("resume")
    suite = write_suite(tmp / "rs.yaml", SUITE)
    data = write_fashion_mnist(tmp / "data")
    r = harness("run", suite, "--device", "cpu", "--no-tracking", "--data-dir", data, "--out", tmp / "results",
                "--keep-checkpoints", threads=1, cwd=tmp)
    assert r.returncode == 0, r.stderr
    (run_dir,) = (tmp / "results" / "rs").iterdir()
    return tmp, suite, data, run_dir


def interrupted(made, tmp_path):
    """A copy of the run as if it had been stopped during its training: no row, the checkpoint there."""
    _, _, _, run_dir = made
    cut = shutil.copytree(run_dir, tmp_path / "cut")
    for name in ("results.parquet", "results.csv"):
        (cut / name).unlink()
    (cut / "state.json").write_text(json.dumps(json.loads((cut / "state.json").read_text()) | {"finished": False}))
    assert (cut / "checkpoints" / "a" / "last.pt").is_file()
    return cut


def test_a_resume_at_other_cpu_threads_is_refused_with_the_command_that_matches(made, tmp_path):
    tmp, suite, data, _ = made
    cut = interrupted(made, tmp_path)
    before = tree(cut)
    r = harness("run", suite, "--device", "cpu", "--no-tracking", "--data-dir", data, "--resume", cut, threads=2,
                cwd=tmp)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"error: --resume {cut}: that run was made under other settings: CPU threads 1 (now 2); resume it as it "
        f"was made: OMP_NUM_THREADS=1 python -m harness run {suite} --resume {cut} --device cpu --no-tracking "
        f"--data-dir {data} (or start a new run)")
    assert tree(cut) == before
    r = harness("run", suite, "--device", "cpu", "--no-tracking", "--data-dir", data, "--resume", cut, threads=1,
                cwd=tmp)  # the command it gave
    assert r.returncode == 0 and "a: resumed after epoch 1" in r.stderr, r.stderr


def test_a_checkpoint_made_on_other_data_is_refused(made, tmp_path):
    tmp, suite, _, _ = made
    cut = interrupted(made, tmp_path)
    other = write_fashion_mnist(tmp_path / "other", tweak=True)  # one pixel differs
    before = tree(cut)
    r = harness("run", suite, "--device", "cpu", "--no-tracking", "--data-dir", other, "--resume", cut, threads=1,
                cwd=tmp)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: --resume {cut}: the checkpoint of a ({cut / 'checkpoints' / 'a' / 'last.pt'}) "
                               f"was trained on other data (digest ")
    assert "resume with the --data-dir it was made with, or start a new run" in r.stderr
    assert tree(cut) == before


@pytest.mark.parametrize("field,value,words", [
    ("device", "cuda", "device cuda (now cpu); resume it as it was made: "),
    ("git_commit", "0" * 40, "git commit 000000000000 (now "),
    ("torch", "1.0.0", "torch 1.0.0 (now "),
    ("cpu_model", "Another CPU 9000", "device model Another CPU 9000 (now "),
])
def test_a_resume_on_another_device_machine_or_code_is_refused(made, tmp_path, field, value, words):
    tmp, suite, data, _ = made
    cut = interrupted(made, tmp_path)
    env = json.loads((cut / "env.json").read_text())
    if field == "cpu_model" and not env.get("cpu_model"):
        pytest.skip("this machine's CPU model is unknown (env.json has none), so it is not compared")
    (cut / "env.json").write_text(json.dumps(env | {field: value}))  # as a run made there would have recorded it
    before = tree(cut)
    r = harness("run", suite, "--device", "cpu", "--no-tracking", "--data-dir", data, "--resume", cut, threads=1,
                cwd=tmp)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert f"error: --resume {cut}: that run was made under other settings: " in r.stderr and words in r.stderr
    if field == "device":
        assert f"python -m harness run {suite} --resume {cut} --device cuda --no-tracking" in r.stderr
    else:
        assert "resume it as it was made on a machine and checkout with " in r.stderr
    assert tree(cut) == before
