"""One run's plots, into <run_dir>/plots/, written by the runner once its experiments ran and by
scale/merge.py for a merged run (both before report.md, so a report can embed them):

- per kernel experiment, `<experiment>-time.png`: median time per call against the problem size,
  log-log, a line (with markers) per variant, the fitted scaling exponent in the legend (`fit_slope`:
  the least-squares slope of log time against log size: 1 is linear in the size, 2 quadratic). The
  size is the input's elements (C·H·W) when the experiment varies it; its other varying size
  parameters (kernel, padding, stride, output channels, ...) make one panel each. An experiment
  whose input is fixed is drawn against the one numeric size parameter that varies (the pooling
  window's elements), else the work per call (flops), a panel per text parameter (pooling mode). Capped and failed rows have no time: their points are missing, a line needs two
  points for a fit, and a variant with no time at all is named in the legend with its status.
- for training experiments, `training.png` (harness.train.plots.side_by_side): every model's
  training loss per batch and validation accuracy per epoch on the same axes.

Lives in run/ beside report.py (not in the kinds' packages): `merge` draws them too and never
imports torch, which importing harness.kernels would. A plot that cannot be drawn is warned about
and left out: a plotting bug never costs a run its results. matplotlib is imported inside functions.
"""
from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

from harness.core.palette import colour_map
from harness.train import datasets
from harness.train import plots as train_plots

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
INPUT_KEYS = ("input", "channels_in", "channels")  # the parameters the input's elements are made of


def write(experiments: list[dict], rows: list[dict], steps: list[dict], run_dir: Path) -> list[Path]:
    """Every plot of the run (paths written). `experiments`: the resolved suite's experiment dicts
    (suite.yaml's), `rows` and `steps`: the run's results rows and steps.csv records, as dicts."""
    plot_dir = Path(run_dir) / "plots"
    kernel = [r for r in rows if r.get("kind") == "kernel"]
    variants = colour_map(r["variant"] for r in kernel)  # the same colour for a variant in every plot of the run
    out = []
    for exp_id in dict.fromkeys(r["experiment"] for r in kernel):
        exp_rows = [r for r in kernel if r["experiment"] == exp_id]
        if any(r.get("status") == "ok" for r in exp_rows):  # else nothing to draw: report.md says why
            path = plot_dir / f"{file_name(exp_id)}-time.png"
            out += _drawn(path, time_vs_size, exp_id, exp_rows, path, variants)
    train = [r for r in rows if r.get("kind") == "train"]
    if train:
        path = plot_dir / "training.png"
        out += _drawn(path, training, experiments, train, steps, path)
    return out


def file_name(exp_id: str) -> str:
    return exp_id.replace("/", "_")


def _drawn(path: Path, draw, *args) -> list[Path]:
    try:
        draw(*args)
    except Exception as e:  # noqa: BLE001 - any plotting failure: warn, keep the run
        print(f"warning: could not draw {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return []
    return [path]


def fit_slope(xs, ys) -> float | None:
    """Least-squares slope of log y against log x (the scaling exponent: y ~ x^slope); None with
    fewer than two distinct positive x (nothing to fit)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if _positive(x) and _positive(y)]
    if len({x for x, _ in pts}) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def _positive(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def kernel_series(rows: list[dict]) -> tuple[str, dict, dict]:
    """(x axis label, {panel title: {variant: [(size, median time)], sorted}}, {panel title: {variant:
    [status of each row without a time]}}) of one kernel experiment; a variant without any time has an
    empty list. Seeds and equal sizes: the median of their times."""
    configs = [json.loads(r["config"]) for r in rows]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    varying = [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]
    elements = [_input_elements(c) for c in configs]
    if None not in elements and len(set(elements)) > 1:
        label, xs = "input elements (C·H·W)", elements
        split = [k for k in varying if k not in INPUT_KEYS]
    else:  # the input is fixed: the one numeric size parameter that varies, else the work per call
        numeric = [k for k in varying if not any(isinstance(c.get(k), str) for c in configs)]
        if len(numeric) == 1:
            key = numeric[0]
            label, xs = f"{key} ({'elements' if isinstance(configs[0].get(key), list) else 'value'})", [
                float(math.prod(v) if isinstance(v := c.get(key), list) else v) for c in configs]
        else:
            label, xs = "arithmetic operations per call (flops)", [r.get("flops") for r in rows]
        split = [k for k in varying if k not in numeric]
    panels: dict[str, dict[str, dict[float, list[float]]]] = {}
    missing: dict[str, dict[str, list[str]]] = {}
    for r, c, x in zip(rows, configs, xs):
        title = " ".join(f"{k}={_value(c.get(k))}" for k in split)
        by_size = panels.setdefault(title, {}).setdefault(r["variant"], {})
        t = r.get("time_median_s")
        if r.get("status") == "ok" and _positive(t) and _positive(x):
            by_size.setdefault(float(x), []).append(float(t))
        else:
            missing.setdefault(title, {}).setdefault(r["variant"], []).append(str(r.get("status")))
    return label, {title: {v: sorted((x, _median(ts)) for x, ts in sizes.items()) for v, sizes in series.items()}
                   for title, series in panels.items()}, missing


def _input_elements(config: dict) -> float | None:
    if not isinstance(config.get("input"), list):
        return None
    h, w = config["input"]
    return float(h * w * (config.get("channels_in") or config.get("channels") or 1))


def _value(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, list) else str(v)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def time_vs_size(exp_id: str, rows: list[dict], path: Path, colours: dict[str, str]) -> Path:
    plt = train_plots.pyplot()
    label, panels, missing = kernel_series(rows)
    cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / cols)
    width = max(5.2 * cols, 7.5)
    fig, axes = plt.subplots(n_rows, cols, figsize=(width, 4.0 * n_rows + 0.8), squeeze=False)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for ax, (title, series) in zip(axes.flat, panels.items()):
        for j, variant in enumerate(variants):
            points = series.get(variant, [])
            ax.plot([x for x, _ in points], [t for _, t in points], "-", marker=MARKERS[j % len(MARKERS)], ms=5,
                    color=colours[variant], label=_legend(variant, points, missing.get(title, {}).get(variant, [])))
        ax.set_xscale("log")
        ax.set_yscale("log")
        _size_ticks(ax, sorted({x for points in series.values() for x, _ in points}))
        ax.set_xlabel(label)
        ax.set_ylabel("median time per call (s)")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    r = rows[0]
    title = (textwrap.fill(f"{exp_id}: kernel {r.get('family')}, {r.get('dtype')}, {r.get('device')} "
                           f"({r.get('device_name')}), {r.get('threads')} thread(s), baseline {r.get('baseline')}",
                           width=int(width * 11)) + f"\nrun {r.get('run_id')}")  # ~11 characters an inch
    return train_plots.save(fig, plt, path, title)


def _size_ticks(ax, xs: list[float]) -> None:
    """The sizes themselves as the x ticks when there are few (a short log range otherwise gets
    overlapping minor labels like 6.35x10^4)."""
    from matplotlib.ticker import NullFormatter

    if 0 < len(xs) <= 8:
        ax.set_xticks(xs, [f"{x:,.0f}" if x >= 1 else f"{x:g}" for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(variant: str, points, missing: list[str]) -> str:
    """e.g. `loop (slope 2.0; capped at 2 sizes)`, `native (1 size: no fit)`, `loop (no time: capped)`."""
    slope = fit_slope([x for x, _ in points], [t for _, t in points])
    fit = f"slope {slope:.1f}" if slope is not None else "1 size: no fit" if points else "no time"
    counts = {s: missing.count(s) for s in sorted(set(missing))}
    gaps = ", ".join(f"{s} at {n} size{'s' if n > 1 else ''}" for s, n in counts.items())
    return f"{variant} ({fit}{'; ' + gaps if gaps else ''})"


def training(experiments: list[dict], rows: list[dict], steps: list[dict], path: Path) -> Path:
    """plots/training.png: the run's training experiments side by side; the settings they share in
    the title, those that differ in each one's legend entry."""
    specs = {e.get("id"): e for e in experiments}
    ids = list(dict.fromkeys(r["experiment"] for r in rows))
    curves, setting = {}, {}
    for r in rows:
        exp_id = r["experiment"]
        curves[exp_id] = train_plots.curves_from_steps([s for s in steps if s.get("experiment") == exp_id])
        spec = specs.get(exp_id, {})
        images = datasets.train_images(spec["dataset"], spec.get("train_limit")) if "dataset" in spec else None
        setting[exp_id] = dict(train_plots.settings(r.get("model"), r.get("lr"), r.get("batch_size"), r.get("epochs"),
                                                    images, r.get("determinism"),
                                                    f"{r.get('device')} ({r.get('device_name')})"))
    keys = list(next(iter(setting.values())))
    shared = [k for k in keys if len({setting[i][k] for i in ids}) == 1 and k != "model"]
    labels = {i: " · ".join([i, *(setting[i][k] for k in keys if k not in shared and setting[i][k] != i)])
              for i in ids}
    title = (f"{len(ids)} training experiment(s): {' · '.join(setting[ids[0]][k] for k in shared)}\n"
             f"run {rows[0].get('run_id')}")
    return train_plots.side_by_side({i: curves[i] for i in ids}, path, colours=colour_map(ids), labels=labels,
                                    title=title)
