"""A run reads at a glance: the kernel time-vs-size plots (and their fitted scaling exponent), the
training plots (per batch loss as ProgressBoard samples it, every model side by side), and the
dashboard's colours (a model or variant keeps its colour on every chart) and kernel charts (one per
experiment)."""
from __future__ import annotations

import json
import math

import pytest
from conftest import run_cli, write_suite, store_copy

from harness.core.palette import PALETTE, colour_map
from harness.run import plots, results


def _decoded(path):
    """The PNG decoded: (height, width, channels), each nonzero."""
    from matplotlib.image import imread

    shape = imread(path).shape
    assert path.stat().st_size > 10_000 and len(shape) == 3 and min(shape) > 0, (path, shape)
    return shape


def test_the_fitted_slope_of_a_quadratic_loop_is_2_and_of_a_linear_one_1():
    n = [8, 16, 32, 64, 128]
    wobble = [1.03, 0.98, 1.01, 0.97, 1.02]  # timing noise of a few percent
    assert plots.fit_slope(n, [2e-7 * k**2 * w for k, w in zip(n, wobble)]) == pytest.approx(2.0, abs=0.05)
    assert plots.fit_slope([k * k for k in n], [1e-8 * k * k * w for k, w in zip(n, wobble)]) == pytest.approx(1.0, abs=0.05)
    assert plots.fit_slope(n, [3e-6] * 5) == pytest.approx(0.0, abs=1e-12)


def test_no_fit_without_two_sizes_and_missing_times_are_skipped():
    assert plots.fit_slope([16], [1e-3]) is None
    assert plots.fit_slope([16, 16], [1e-3, 2e-3]) is None  # two rows, one size
    assert plots.fit_slope([], []) is None
    # a capped or failed row has no time (NaN or None): it is left out, not fitted as zero
    assert plots.fit_slope([4, 8, 16, 32], [1.0, None, math.nan, 64.0]) == pytest.approx(2.0)


def _kernel_rows():
    """A loop O(n^2) in the side (capped at the largest input), vectorized O(n), native failed at one size."""
    rows = []
    for n in (8, 16, 32, 64):
        for k in (2, 3):
            for variant, t in (("loop", 1e-7 * n * n * k), ("vectorized", 1e-6 * n), ("native", 1e-6)):
                capped = variant == "loop" and n == 64
                failed = variant == "native" and n == 16 and k == 3
                rows.append({"experiment": "corr", "kind": "kernel", "family": "corr2d", "variant": variant,
                             "size": f"in={n}x{n} k={k}x{k}", "seed": 0, "baseline": "loop", "dtype": "float32",
                             "config": json.dumps({"input": [n, n], "kernel": [k, k], "padding": [0, 0],
                                                   "stride": [1, 1]}),
                             "status": "capped" if capped else "failed" if failed else "ok",
                             "time_median_s": None if capped or failed else t, "flops": 2.0 * n * n * k * k,
                             "run_id": "20260101T000000Z-abcdef", "device": "cpu", "device_name": "Test CPU",
                             "threads": 1})
    return rows


def test_a_kernel_experiment_has_a_panel_per_kernel_size_and_a_line_per_variant():
    label, panels, missing = plots.kernel_series(_kernel_rows())
    assert label == "input elements (C·H·W)"
    assert list(panels) == ["kernel=2x2", "kernel=3x3"]  # the input is the x axis, the kernel splits panels
    loop = panels["kernel=3x3"]["loop"]
    assert [x for x, _ in loop] == [64.0, 256.0, 1024.0]  # 64x64 capped: no point
    assert plots.fit_slope(*zip(*loop)) == pytest.approx(1.0)  # time ~ n^2 = the input's elements
    assert missing["kernel=3x3"] == {"loop": ["capped"], "native": ["failed"]}
    assert plots._legend("loop", loop, ["capped"]) == "loop (slope 1.0; capped at 1 size)"
    assert plots._legend("native", [], ["failed", "failed"]) == "native (no time; failed at 2 sizes)"
    assert plots._legend("native", [(64.0, 1e-6)], []) == "native (1 size: no fit)"


def test_an_experiment_with_a_fixed_input_is_drawn_against_its_work():
    rows = [{"variant": v, "status": "ok", "time_median_s": 1e-6 * p, "flops": 100.0 * p * p,
             "config": json.dumps({"input": [16, 16], "channels": 4, "pool": [p, p], "mode": m})}
            for v in ("vectorized", "native") for p in (2, 3) for m in ("max", "avg")]
    label, panels, _ = plots.kernel_series(rows)
    assert label == "pool (elements)"  # the one numeric parameter that varies: its window's elements
    assert list(panels) == ["mode=max", "mode=avg"]  # the text parameter splits
    assert panels["mode=max"]["native"] == [(4.0, 2e-6), (9.0, 3e-6)]
    both = [r | {"config": json.dumps(json.loads(r["config"]) | {"channels_out": r["time_median_s"] * 1e6})}
            for r in rows]  # two numeric parameters vary: the work per call it is
    label, panels, _ = plots.kernel_series(both)
    assert label == "arithmetic operations per call (flops)" and list(panels) == ["mode=max", "mode=avg"]


def test_kernel_plots_are_written_per_experiment_and_decode(tmp_path):
    rows = _kernel_rows()
    rows += [r | {"experiment": "corr_b"} for r in rows]
    rows += [{**rows[0], "experiment": "all_failed", "status": "failed", "time_median_s": None}]
    written = plots.write([], rows, [], tmp_path)
    assert written == [tmp_path / "plots" / "corr-time.png", tmp_path / "plots" / "corr_b-time.png"]
    for path in written:
        _decoded(path)
    assert not (tmp_path / "plots" / "all_failed-time.png").exists()  # nothing timed: nothing drawn


def test_a_plot_that_cannot_be_drawn_is_a_warning_not_a_lost_run(tmp_path, capsys):
    rows = _kernel_rows()
    rows[0] = rows[0] | {"config": "not json"}
    assert plots.write([], rows, [], tmp_path) == []
    assert f"warning: could not draw {tmp_path / 'plots' / 'corr-time.png'}: JSONDecodeError" in capsys.readouterr().err


def test_the_palette_maps_the_same_names_to_the_same_colours_in_any_order():
    a = colour_map(["vgg", "lenet", "resnet18", "lenet"])
    b = colour_map(["resnet18", "vgg", "lenet"])
    assert a == b == {"lenet": PALETTE[0], "resnet18": PALETTE[1], "vgg": PALETTE[2]}


TWO_MODELS = """
suite: two
defaults: {batch_size: 64, epochs: 2, seed: 0, dataset: fashion_mnist_sample, train_limit: 256, val_limit: 128}
experiments:
  - {name: lenet, kind: train, model: lenet, lr: 0.1}
  - {name: lenet_slow, kind: train, model: lenet, lr: 0.01}
"""


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, _migrated_store):
    """One real run of two small trainings, tracked into a real MLflow SQLite store."""
    tmp = tmp_path_factory.mktemp("two")
    uri = store_copy(_migrated_store, tmp / "mlflow.db")
    write_suite(tmp / "two.yaml", TWO_MODELS)
    proc = run_cli("run", tmp / "two.yaml", "--device", "cpu", "--out", tmp / "results", "--tracking-uri", uri)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp / "results" / "two").iterdir()
    return run_dir, uri


def test_a_training_run_writes_every_model_side_by_side_and_one_plot_each(two_models):
    run_dir, _ = two_models
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == ["lenet.png", "lenet_slow.png", "training.png"]
    for path in (run_dir / "plots").iterdir():
        _decoded(path)


def test_the_per_batch_loss_is_recorded_and_its_epoch_means_are_the_epoch_loss(two_models):
    import pandas as pd

    from harness.train import plots as train_plots

    run_dir, _ = two_models
    steps = pd.read_csv(run_dir / "steps.csv")
    lenet = steps[steps.experiment == "lenet"]
    batch = lenet[lenet.metric == "train_loss_batch"]
    assert list(batch.step) == list(range(1, 9))  # 256 images in batches of 64: 4 a epoch, each its own point
    curves = train_plots.curves_from_steps(lenet.to_dict("records"))
    assert [x for x, _ in curves.batches] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    for epoch, h in enumerate(curves.history):  # equal batches: the mean of the batch means is the epoch's
        points = [loss for x, loss in curves.batches if epoch < x <= epoch + 1]
        assert sum(points) / len(points) == pytest.approx(h["train_loss"], rel=1e-5)


def test_the_run_plots_reach_mlflow(two_models):
    from mlflow.tracking import MlflowClient

    run_dir, uri = two_models
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("two")
    parent = next(r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "plots")} == {
        "plots/lenet.png", "plots/lenet_slow.png", "plots/training.png"}
    history = client.get_metric_history(results.load(run_dir).set_index("experiment").loc["lenet", "mlflow_run_id"],
                                        "train_loss_batch")
    assert sorted(m.step for m in history) == list(range(1, 9))


def test_the_training_title_holds_the_shared_settings_and_the_legend_what_differs(two_models, monkeypatch):
    import pandas as pd

    from harness.train import plots as train_plots

    run_dir, _ = two_models
    seen = {}
    monkeypatch.setattr(train_plots, "side_by_side", lambda curves, path, **kw: seen.update(kw, curves=curves))
    rows = [dict(r) for r in results.load(run_dir).to_dict("records")]
    experiments = [{"id": "lenet", "dataset": "fashion_mnist_sample", "train_limit": 256},
                   {"id": "lenet_slow", "dataset": "fashion_mnist_sample", "train_limit": 256}]
    plots.training(experiments, rows, pd.read_csv(run_dir / "steps.csv").to_dict("records"), run_dir / "x.png")
    assert seen["labels"] == {"lenet": "lenet · lr 0.1", "lenet_slow": "lenet_slow · lenet · lr 0.01"}
    assert seen["title"].startswith("2 training experiment(s): batch 64 · 2 epochs · 256 train images · strict · cpu (")
    assert seen["title"].endswith(f"\nrun {run_dir.name}")
    assert seen["colours"] == {"lenet": PALETTE[0], "lenet_slow": PALETTE[1]}
    assert len(seen["curves"]["lenet_slow"].batches) == 8


def _dashboard(tmp_path):
    """The synthetic runs plus a run of a second kernel experiment of the same family."""
    from synthetic_runs import KA, kernel_rows, write_runs

    from harness.views import dashboard

    write_runs(tmp_path / "results")
    other = [r | {"experiment": "corr_b", "run_id": "20260103T100000Z-eeeeee"} for r in kernel_rows(KA)]
    results.save(other, tmp_path / "results" / "ks" / "20260103T100000Z-eeeeee")
    df, steps = dashboard.load([tmp_path / "results"])
    return {s[0]: s[4] for s in dashboard.sections(df, steps)}


def test_the_dashboard_draws_one_kernel_chart_per_experiment(tmp_path):
    charts = _dashboard(tmp_path)
    assert [c for c in charts if c.startswith("kernel-ks")] == ["kernel-ks-corr", "kernel-ks-corr_b"]
    for anchor in ("kernel-ks-corr", "kernel-ks-corr_b"):
        traces = charts[anchor].to_plotly_json()["data"]
        assert {t["name"] for t in traces if t.get("showlegend") is not False} == {"loop", "native"}


def test_a_model_and_a_variant_keep_their_colour_on_every_dashboard_chart(tmp_path):
    from harness.views import dashboard

    charts = _dashboard(tmp_path)
    models, variants = colour_map(["lenet", "resnet18"]), colour_map(["loop", "native"])
    seen = {}  # (chart, name) -> colours
    for anchor, fig in charts.items():
        for t in fig.to_plotly_json()["data"]:
            if t.get("type") == "bar":  # throughput and memory: a colour per bar, its model's
                assert list(t["marker"]["color"]) == [models[x] for x in t["x"]], anchor
                seen.setdefault((anchor, "bars"), set()).update(t["marker"]["color"])
                continue
            name = t.get("name") or t.get("legendgroup")
            colour = (t.get("line") or {}).get("color") or (t.get("marker") or {}).get("color")
            if name in models or name in variants or name and name.split(" · ")[-1] in variants:
                key = name.split(" · ")[-1]
                if t.get("fill"):  # the ±1 std band: the same colour, translucent
                    assert t["fillcolor"] == dashboard._rgba((models | variants)[key], 0.18), (anchor, name)
                    continue
                assert colour == (models | variants)[key], (anchor, name, colour)
                seen.setdefault((anchor, key), set()).add(colour)
    # every chart that shows lenet or loop shows it in its one colour
    assert {a for a, k in seen if k == "lenet"} == {"training-curves", "time-to-accuracy"}
    assert {a for a, k in seen if k == "loop"} == {"kernel-ks-corr", "kernel-ks-corr_b", "kernel-history"}
    assert seen[("throughput-memory", "bars")] == {models["lenet"], models["resnet18"]}
