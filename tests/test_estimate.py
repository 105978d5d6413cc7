"""The duration estimate (harness.run.estimate, the kinds' `estimate`) and the progress it drives
(harness.run.progress): its mechanics with injected rates and clocks, never wall-clock limits."""
from __future__ import annotations

import io
import math
import re

import pytest
from conftest import run_cli, write_suite

from harness.core.kinds import Work
from harness.kernels.estimate import ROW_S, estimate_kernel, row_seconds
from harness.kernels.kind import KernelSpec
from harness.run.estimate import HOUR_S, Plan, duration, headline, too_long
from harness.run.progress import INTERVAL_ENV, SuiteProgress, interval_s
from harness.train.estimate import epoch_flops, estimate_train, flops_per_image, images
from harness.train.kind import TrainSpec

RATE = 1e9  # an injected FLOP/s: no probe runs


def lenet(**fields) -> TrainSpec:
    return TrainSpec(**({"name": "l", "kind": "train", "model": "lenet", "dataset": "fashion_mnist_sample"} | fields))


# ---- training: FLOPs x images x epochs / rate ---------------------------------------------------

def test_a_training_estimate_scales_with_epochs():
    two, four = (estimate_train(lenet(epochs=e), "cpu", rate=RATE, world_size=1) for e in (2, 4))
    assert len(two.tasks) == 1 and len(two.tasks[0]) == 2 and len(four.tasks[0]) == 4
    assert four.tasks[0][0] == two.tasks[0][0] > 0
    assert four.seconds - four.overhead_s == pytest.approx(2 * (two.seconds - two.overhead_s))


def test_a_training_estimate_scales_with_images_train_and_validation():
    spec = lenet(train_limit=512, val_limit=256)
    one = estimate_train(spec, "cpu", rate=RATE, world_size=1).tasks[0][0]
    double = estimate_train(lenet(train_limit=1024, val_limit=512), "cpu", rate=RATE, world_size=1).tasks[0][0]
    assert double == pytest.approx(2 * one)
    # training steps cost the counted forward+backward FLOPs, validation a forward pass: a third of them
    assert one == pytest.approx(flops_per_image(spec) * (512 + 256 / 3) / RATE)
    assert images(lenet()) == (2000, 1000) and images(lenet(dataset="fashion_mnist")) == (60_000, 10_000)
    assert epoch_flops(3.0, lenet(train_limit=30, val_limit=9)) == pytest.approx(3.0 * (30 + 3))


def test_a_faster_device_or_more_processes_take_proportionally_less():
    spec = lenet(epochs=3)
    slow = estimate_train(spec, "cpu", rate=RATE, world_size=1)
    assert estimate_train(spec, "cpu", rate=4 * RATE, world_size=1).tasks[0][0] == pytest.approx(slow.tasks[0][0] / 4)
    assert estimate_train(spec, "cpu", rate=RATE, world_size=2).tasks[0][0] == pytest.approx(slow.tasks[0][0] / 2)


# ---- kernels: from the spec -----------------------------------------------------------------------

def kernel(inputs, min_run_time_s=0.2, loop_max_iters=200_000) -> KernelSpec:
    return KernelSpec(name="c", kind="kernel", kernel="corr2d", variants=["loop", "vectorized", "native"],
                      sizes={"input": inputs, "kernel": [[3, 3]]}, min_run_time_s=min_run_time_s,
                      loop_max_iters=loop_max_iters)


def test_a_kernel_estimate_has_a_row_per_task_and_scales_with_rows():
    one = estimate_kernel(kernel([[16, 16]]), "cpu", iter_s=1e-6)
    three = estimate_kernel(kernel([[16, 16], [17, 17], [18, 18]]), "cpu", iter_s=1e-6)
    assert len(one.tasks) == 3 and len(three.tasks) == 9  # sizes x variants, as kernel_tasks
    assert three.seconds == pytest.approx(3 * one.seconds, rel=0.01)
    assert one.rate is None  # from the spec: never scaled by a training's measured rate
    assert estimate_kernel(kernel([[16, 16]], min_run_time_s=1.0), "cpu", iter_s=1e-6).seconds > 4 * one.seconds


def test_a_slow_loop_row_costs_its_calls_and_a_capped_one_almost_nothing():
    spec = kernel([[1000, 1000]], loop_max_iters=10**7)  # 998 x 998 loop iterations
    loop_row = estimate_kernel(spec, "cpu", iter_s=1e-5).tasks[0][0]
    call = 998 * 998 * 1e-5  # ~10 s a call: at least three timed blocks, the warm-up and the check
    assert loop_row == pytest.approx(row_seconds(0.2, call)) and loop_row > 5 * call
    capped = estimate_kernel(kernel([[1000, 1000]], loop_max_iters=100), "cpu", iter_s=1e-5).tasks[0][0]
    assert capped == ROW_S


# ---- the plan: refined while it runs ----------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plan(clock=None) -> Plan:
    """a: 3 epochs of 10 s, b: 2 epochs of 20 s (both rated: FLOPs / a probed rate), c: 2 kernel rows
    of 1 s (from the spec); 2 s fixed cost per training."""
    return Plan([("a", "train", Work("epoch", ((10.0, 10.0, 10.0),), 2.0, RATE)),
                 ("b", "train", Work("epoch", ((20.0, 20.0),), 2.0, RATE)),
                 ("c", "kernel", Work("row", ((1.0,), (1.0,))))], clock=clock or Clock())


def test_the_first_estimate_is_the_sum_of_the_kinds_work():
    p = plan()
    assert p.total_s == p.remaining_s() == 32 + 42 + 2
    assert [p.experiment_s(i) for i in range(3)] == [32, 42, 2]


def test_the_estimate_is_refined_after_the_first_epoch():
    p = plan()
    p.start(0, 0)
    assert p.unit_done(1, 30.0) == 3.0  # the first epoch of a took 30 s, 3x its estimate: said once
    # a: measured time per epoch x epochs remaining; b (rated, not yet run): corrected by 30/10,
    # shrunk toward the probe (geometric mean of 3 and 1); c (from the spec): as it was
    assert p.experiment_remaining_s(0) == pytest.approx(2 * 30 + 2)
    assert p.correction() == pytest.approx(math.sqrt(3.0))
    assert p.experiment_remaining_s(1) == pytest.approx(2 * 20 * math.sqrt(3.0) + 2)
    assert p.experiment_remaining_s(2) == pytest.approx(2)
    assert p.done_s() == pytest.approx(30)
    assert p.unit_done(2, 20.0) is None  # a's epochs so far average 25 s
    assert p.experiment_remaining_s(0) == pytest.approx(25 + 2)
    assert p.experiment_remaining_s(1) == pytest.approx(2 * 20 * math.sqrt(2.5) + 2)


def test_a_finished_experiment_teaches_the_fixed_cost_and_b_corrects_the_rate_too():
    p = plan()
    p.start(0, 0)
    for k in range(3):
        p.unit_done(k + 1, 5.0)  # twice as fast as estimated
    p.task_done(15.0 + 4.0)  # 4 s outside the epochs (data, plots)
    assert p.experiment_remaining_s(0) == 0
    assert p.experiment_remaining_s(1) == pytest.approx(2 * 20 * math.sqrt(0.5) + 4.0)
    p.start(1, 0)
    assert p.unit_done(1, 40.0) == 2.0  # b is 2x slower than estimated
    assert p.correction() == pytest.approx((0.5 * 2.0 * 1.0) ** (1 / 3))
    assert p.experiment_remaining_s(1) == pytest.approx(40 + 4.0)


def test_within_an_epoch_the_pace_of_its_batches_counts_once_a_quarter_is_done():
    clock = Clock()
    p = plan(clock)
    p.start(0, 0)
    clock.now = 5.0
    p.progress(0.1)  # too early to judge: 10% of the 10 s epoch done
    assert p.experiment_remaining_s(0) == pytest.approx(32 - 1.0)
    clock.now = 10.0
    p.progress(0.25)  # a quarter in 10 s: this epoch takes 40 s
    assert p.experiment_remaining_s(0) == pytest.approx(0.75 * 40 + 2 * 10 + 2)


def test_tasks_finished_before_a_resume_are_left_out():
    p = plan()
    p.skip(2, 0)
    assert p.remaining_s() == pytest.approx(32 + 42 + 1)


def test_headline_and_the_cpu_warning():
    p = Plan([("big", "train", Work("epoch", ((HOUR_S,) * 2,), 0.0, 3.1e9))])
    assert headline(p, "cpu") == "estimate: ~2.0 h on cpu (probe: 3.1 GFLOP/s)"
    assert "suites/smoke.yaml" in too_long(p, "cpu") and "GPU" in too_long(p, "cpu")
    assert too_long(p, "cuda") is None and too_long(plan(), "cpu") is None
    assert [duration(s) for s in (0.2, 40, 840, 3 * HOUR_S, 3 * 86400)] == ["1 s", "40 s", "14 min", "3.0 h",
                                                                          "3.0 days"]


# ---- progress --------------------------------------------------------------------------------------

def test_the_suite_bar_counts_work_in_estimated_seconds_with_the_time_left():
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, width=150)
    with SuiteProgress(console, plan(), "s") as progress:
        progress.start(0, 0, "a")
        progress.update("epoch 1/3", 4, 8)
        progress.unit_done(1, 10.0)
        suite = progress.bars.tasks[0]
        assert suite.completed == pytest.approx(10.0) and suite.total == pytest.approx(76.0)
        assert suite.fields["left"] == "~66 s left" and suite.fields["count"] == "13%"


def test_the_progress_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert interval_s() == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    assert interval_s() == 30.0


def test_list_prints_an_estimate_per_experiment_and_in_total(tmp_path):
    limits = "kind: train, model: lenet, dataset: fashion_mnist_sample, train_limit: 64, val_limit: 32"
    write_suite(tmp_path / "s.yaml", f"""
        suite: s
        experiments:
          - {{name: short, {limits}, epochs: 1}}
          - {{name: long, {limits}, epochs: 8}}
          - {{name: c, kind: kernel, kernel: corr2d, variants: [vectorized], sizes: {{input: [[8, 8]], kernel: [[2, 2]]}}}}
        """)
    proc = run_cli("list", "s.yaml", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in ("short", "long", "c"):
        (line,) = [ln for ln in lines if ln.startswith(f"  {name} ")]
        assert re.search(r"\[1 rows\]  ~\d+(\.\d)? (s|min|h|days)$", line), line
    assert re.fullmatch(r"estimate: ~\d+(\.\d)? (s|min|h|days) on cpu \(probe: [\d.,]+ GFLOP/s\)", lines[-2]), lines
    assert lines[-1] == "3 experiments, 3 rows"
    assert "warning" not in proc.stderr
    assert "~" not in run_cli("list", "s.yaml", "--no-estimate", cwd=tmp_path).stdout


def test_list_warns_when_a_suite_would_take_over_an_hour_on_a_cpu():
    proc = run_cli("list", "suites/training.yaml", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^warning: this would take about .* on this CPU\. Try the smoke suite first "
                     r"\(python -m harness run suites/smoke\.yaml\).*a GPU \(--device cuda\)\.$", proc.stderr, re.M)


def test_a_run_whose_output_is_not_a_terminal_prints_plain_progress_lines(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {INTERVAL_ENV: "0"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(REPO / "suites" / "smoke.yaml"), "-k", "lenet",
                           "--no-tracking", "--device", "cpu", "--out", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    assert re.fullmatch(r"estimate: ~\d+(\.\d)? (s|min|h) on cpu \(probe: [\d.,]+ GFLOP/s\)", err[0]), err[:3]
    lines = [ln for ln in err if ln.startswith("progress: ")]
    # smoke's lenet: 512 images in batches of 64, two epochs; an interval of 0 prints at every update
    assert "progress: lenet epoch 1/2 batch 1/8 | elapsed " in "\n".join(lines)
    assert any(ln.startswith("progress: lenet epoch 2/2 batch 8/8 | elapsed ") for ln in lines), lines
    (refined,) = [ln for ln in err if ln.startswith("  estimate: ")]  # once, after the first epoch
    assert re.fullmatch(r"  estimate: ~\d+(\.\d)? (s|min|h) left \(lenet's first epoch took [\d.]+x its estimate\)",
                        refined), refined
    assert all(re.search(r"\| elapsed \d+(\.\d)? (s|min|h), ~\d+(\.\d)? (s|min|h) left \(\d+% of the work done\)$", ln)
               for ln in lines), lines
    assert "\x1b[" not in proc.stderr  # no terminal control codes in a log


def test_a_shard_estimates_its_own_part(tmp_path):
    kernels = "".join(f"  - {{name: k{i}, kind: kernel, kernel: corr2d, variants: [vectorized, native], "
                      f"sizes: {{input: [{', '.join(['[8, 8]'] * (i + 1))}], kernel: [[2, 2]]}}, "
                      f"min_run_time_s: 30}}\n" for i in range(2))
    write_suite(tmp_path / "s.yaml", "suite: s\nexperiments:\n" + kernels)
    whole = run_cli("list", "s.yaml", "--device", "cpu", cwd=tmp_path)
    second = run_cli("list", "s.yaml", "--device", "cpu", "--shard", "1/2", cwd=tmp_path)
    assert whole.returncode == 0 and second.returncode == 0, whole.stderr + second.stderr
    # k0: 2 rows, k1: 4 rows, each about 33 s (min_run_time_s 30 and its calibration)
    assert "estimate: ~3 min on cpu" in whole.stdout.splitlines()
    assert [ln for ln in second.stdout.splitlines() if ln.startswith("  ")][0].startswith("  k1 ")
    assert "estimate: ~2 min on cpu" in second.stdout.splitlines()
