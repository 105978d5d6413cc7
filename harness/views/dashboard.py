"""A static dashboard of runs: one self-contained HTML page with interactive plotly charts.

    python -m harness dashboard [RUN_DIR ...] [--suite NAME] [--since DATE] [--out dashboards/site]

plotly.js is embedded in the page (no CDN, no server): index.html opens from the file system,
offline, and can be mailed or attached to CI as one file. Charts (dashboards/README.md says more):

- kernel time and speedup against input size, one chart per kernel experiment, a trace per variant (log axes);
- training curves per model: mean over seeds and runs with a ±1 std band;
- training throughput and peak memory per model and device (mean ± std);
- time to accuracy: validation accuracy against cumulative training time;
- the history of kernel timings across runs, with regressions (harness.views.compare's "worse") marked.

Each chart's caption names the runs, commits and devices it was drawn from. A model (training) or a
variant (kernels) keeps its colour on every chart (harness.core.palette: the names sorted onto one
palette, as in the run directories' PNGs); several devices in a chart differ by dash or bar pattern.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sys
from html import escape
from pathlib import Path

from harness.core.palette import colour_map
from harness.views import compare
from harness.run import results, rundir

DASHES = ("solid", "dash", "dot", "dashdot", "longdash")  # one per device in a chart
PATTERNS = ("", "/", ".", "x", "-")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star")  # one per kernel family in the history
CURVES = {"train_loss": "training loss", "val_acc": "validation accuracy"}


def build(paths: list[Path], out_dir: Path, suite: str | None = None, since: str | None = None) -> Path:
    """Write out_dir/index.html from the runs under `paths` (results/ by default); returns its path."""
    rundir.check_out(Path(out_dir), "dir", example="dashboards/site")  # never into a run directory
    df, steps = load(paths, suite, since)
    index = Path(out_dir) / "index.html"
    results.atomic_write_text(index, _page(df, sections(df, steps)))
    return index


def load(paths: list[Path], suite: str | None = None, since: str | None = None):
    """(rows prepared by harness.views.compare, their runs' steps.csv records) of the runs under `paths`."""
    import pandas as pd

    df, steps = [], []
    when = compare.parse_since(since)
    for path, rows in compare.scan(paths, suite):  # each results file read (and validated) once
        df.append(rows)
        steps_csv = (path if path.is_dir() else path.parent) / "steps.csv"
        if steps_csv.is_file() and len(rows):
            run_steps = _read_steps(steps_csv)
            if run_steps is not None:
                steps.append(run_steps.assign(run_id=rows["run_id"].iloc[0]))
    df = compare.select(pd.concat(df, ignore_index=True), suite, when, where=", ".join(map(str, paths)) or "results",
                        runs=len(df))
    df = compare.prepared(df)
    steps = pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(columns=["run_id", "experiment", "seed"])
    return df, steps


def sections(df, steps) -> list:
    """The charts, (anchor, title, provenance, note, plotly figure) each, of prepared rows and steps."""
    colours = {"model": colour_map(df.loc[df["kind"] == "train", "name"].dropna()),
               "variant": colour_map(df.loc[df["kind"] == "kernel", "variant"].dropna())}
    found = [*_kernel_scaling(df, colours), _training_curves(df, steps, colours), _throughput_memory(df, colours),
             _time_to_accuracy(df, steps, colours), _kernel_history(df, colours)]
    return [s for s in found if s is not None]


def _provenance(sub) -> str:
    """Which runs, commits and devices a chart is drawn from."""
    runs = sorted(set(sub["run_id"]))
    shown = ", ".join(runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")
    devices = sorted({f"{d} ({n})" for d, n in zip(sub["device"], sub["device_name"])})
    return (f"From {len(runs)} run(s): {shown}; commit(s) {', '.join(sorted(set(sub['commit'])))}; "
            f"device(s) {', '.join(devices)}.")


def _dashes(sub) -> dict:
    """device name -> dash style of the chart's lines (solid for all when it holds one device)."""
    return {d: DASHES[i % len(DASHES)] for i, d in enumerate(sorted(set(sub["device_name"])))}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _label(sub, parts: list[str]) -> callable:
    """Trace names: the given columns, plus the device when the chart holds several."""
    several = sub["device_name"].nunique() > 1
    return lambda row: " · ".join([*(str(row[p]) for p in parts), *([row["device_name"]] if several else [])])


def _input_elements(config: str) -> float:
    """C·H·W of a kernel row's size point; NaN (no point drawn) for a family without an `input` size
    (a plugin's) or a config that does not hold one."""
    c = json.loads(config)
    try:
        h, w = c["input"]
        return float(h * w * (c.get("channels_in") or c.get("channels") or 1))
    except (KeyError, TypeError, ValueError):
        return float("nan")


def _kernel_scaling(df, colours) -> list:
    """One chart per kernel experiment (per suite: ids are a suite's own), a trace per variant."""
    from plotly.subplots import make_subplots

    k = df[(df["kind"] == "kernel") & (df["status"] == "ok")]
    out = []
    for (suite, experiment), g in k.groupby(["suite", "experiment"], sort=False):
        family, baseline = g["family"].iloc[0], g["baseline"].iloc[0]
        dashes = _dashes(g)
        g = g.assign(x=g["config"].map(_input_elements), trace=g.apply(_label(g, ["variant"]), axis=1))
        pts = g.groupby(["trace", "size"], sort=False).agg(
            x=("x", "first"), time=("time_median_s", "median"), speedup=("speedup", "median"),
            variant=("variant", "first"), device=("device_name", "first")).reset_index()
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                            subplot_titles=("median time per call (s)", f"speedup over {baseline}"))
        for name, t in pts.groupby("trace", sort=False):
            t = t.sort_values("x")
            colour, dash = colours["variant"][t["variant"].iloc[0]], dashes[t["device"].iloc[0]]
            for col, y in ((1, "time"), (2, "speedup")):
                t_ok = t[t[y].notna()]
                line = t_ok.groupby("x")[y].median()
                fig.add_scatter(x=t_ok["x"], y=t_ok[y], mode="markers", name=name, legendgroup=name,
                                showlegend=col == 1, marker={"color": colour, "size": 7},
                                text=t_ok["size"], hovertemplate="%{text}<br>%{y:.3g}<extra>" + name + "</extra>",
                                row=1, col=col)
                fig.add_scatter(x=line.index, y=line.to_numpy(), mode="lines", legendgroup=name, showlegend=False,
                                line={"color": colour, "width": 1.5, "dash": dash}, hoverinfo="skip", row=1, col=col)
        fig.update_xaxes(type="log", title_text="input elements (C·H·W)")
        fig.update_yaxes(type="log")
        out.append((f"kernel-{_slug(suite)}-{_slug(experiment)}",
                    f"Kernel experiment {experiment} ({family}, suite {suite}): time and speedup against input size",
                    _provenance(g),
                    "Markers: every size point (median over runs and seeds; hover for the full size); lines: "
                    "median over the sizes with the same input.", _layout(fig)))
    return out


def _read_steps(path: Path):
    """A run's steps.csv (harness.run.runfiles.read_steps), or None (warned, its curves left out)
    when it is damaged or foreign: one bad file must not cost the dashboard of every other run."""
    from harness.core.errors import UserError
    from harness.run.runfiles import read_steps

    try:
        return read_steps(path)
    except UserError as e:
        print(f"warning: {e}; its training curves are left out", file=sys.stderr)
        return None


def _train_steps(df, steps):
    """Per-epoch metrics of training rows, with the model's name, suite and device attached."""
    t = df[df["kind"] == "train"][["run_id", "experiment", "seed", "suite", "name", "device_name"]]
    return steps.merge(t.drop_duplicates(["run_id", "experiment"]), on=["run_id", "experiment"],
                       suffixes=("", "_row")) if len(t) and len(steps) else None


def _training_curves(df, steps, colours):
    from plotly.subplots import make_subplots

    s = _train_steps(df, steps)
    if s is None or s.empty:
        return None
    s = s[s["metric"].isin(list(CURVES))].assign(trace=lambda d: d.apply(_label(d, ["name"]), axis=1))
    fig = make_subplots(rows=1, cols=len(CURVES), subplot_titles=list(CURVES.values()), horizontal_spacing=0.08)
    dashes = _dashes(s)
    for col, metric in enumerate(CURVES, start=1):
        for name, g in s[s["metric"] == metric].groupby("trace", sort=False):
            colour = colours["model"][g["name"].iloc[0]]
            agg = g.groupby("step")["value"].agg(["mean", "std", "count"]).reset_index()
            band = agg.dropna(subset=["std"])
            if len(band):
                fig.add_scatter(x=[*band["step"], *band["step"][::-1]],
                                y=[*(band["mean"] + band["std"]), *(band["mean"] - band["std"])[::-1]],
                                fill="toself", fillcolor=_rgba(colour, 0.18), line={"width": 0},
                                legendgroup=name, showlegend=False, hoverinfo="skip", row=1, col=col)
            fig.add_scatter(x=agg["step"], y=agg["mean"], mode="lines+markers", name=name, legendgroup=name,
                            showlegend=col == 1, line={"color": colour, "dash": dashes[g["device_name"].iloc[0]]},
                            customdata=agg[["std", "count"]],
                            hovertemplate="epoch %{x}: %{y:.4f} ± %{customdata[0]:.4f} (n=%{customdata[1]})"
                                          f"<extra>{name}</extra>", row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    return ("training-curves", "Training curves per model", _provenance(df[df["run_id"].isin(s["run_id"])]),
            "Mean over seeds and runs; the band is ±1 standard deviation (drawn where n ≥ 2).", _layout(fig))


def _throughput_memory(df, colours):
    from plotly.subplots import make_subplots

    t = df[(df["kind"] == "train") & (df["status"] == "ok")]
    if t.empty:
        return None
    m = compare.model_summary(t)
    several = m["suite"].nunique() > 1
    m["x"] = [f"{s}/{n}" if several else n for s, n in zip(m["suite"], m["name"])]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training images/s", "peak memory (MiB)"),
                        horizontal_spacing=0.08)
    patterns = {d: PATTERNS[i % len(PATTERNS)] for i, d in enumerate(sorted(set(m["device_name"])))}
    for device, g in m.groupby("device_name", sort=False):
        bar_colours = [colours["model"][n] for n in g["name"]]  # each bar its model's colour; devices: patterns
        for col, (metric, scale) in enumerate((("images_per_s", 1.0), ("peak_mem_bytes", 2**-20)), start=1):
            fig.add_bar(x=g["x"], y=g[f"{metric}_mean"] * scale, name=device, legendgroup=device,
                        showlegend=col == 1, marker={"color": bar_colours, "pattern": {"shape": patterns[device]}},
                        customdata=g[["n"]],
                        error_y={"type": "data", "array": (g[f"{metric}_std"] * scale).fillna(0).to_numpy()},
                        hovertemplate="%{x}: %{y:,.0f} (n=%{customdata[0]})<extra>" + device + "</extra>",
                        row=1, col=col)
    fig.update_layout(barmode="group")
    memory = ("peak RSS of the process on CPU" if (t["device"] == "cpu").all()
              else "CUDA allocator peak on GPU, peak RSS on CPU")
    return ("throughput-memory", "Throughput and peak memory per model and device", _provenance(t),
            f"Mean ± std over seeds and runs: training images/s (median over epochs, evaluation excluded) and "
            f"peak memory ({memory}).", _layout(fig))


def _time_to_accuracy(df, steps, colours):
    s = _train_steps(df, steps)
    if s is None or s.empty:
        return None
    import plotly.graph_objects as go

    wide = s[s["metric"].isin(["epoch_time_s", "val_acc"])].pivot_table(
        index=["run_id", "experiment", "seed", "suite", "name", "device_name", "step"], columns="metric",
        values="value").reset_index()
    if not {"epoch_time_s", "val_acc"} <= set(wide.columns):
        return None
    wide = wide.sort_values("step")
    wide["elapsed_s"] = wide.groupby(["run_id", "experiment"])["epoch_time_s"].cumsum()
    wide["trace"] = wide.apply(_label(wide, ["name"]), axis=1)
    fig = go.Figure()
    dashes = _dashes(wide)
    for name, g in wide.groupby("trace", sort=False):
        colour, dash = colours["model"][g["name"].iloc[0]], dashes[g["device_name"].iloc[0]]
        agg = g.groupby("step").agg(x=("elapsed_s", "mean"), y=("val_acc", "mean"), err=("val_acc", "std"),
                                    n=("val_acc", "count")).reset_index()
        fig.add_scatter(x=agg["x"], y=agg["y"], mode="lines+markers", name=name, line={"color": colour, "dash": dash},
                        error_y={"type": "data", "array": agg["err"].fillna(0).to_numpy()},
                        customdata=agg[["step", "n"]],
                        hovertemplate="epoch %{customdata[0]} at %{x:.1f} s: %{y:.4f} (n=%{customdata[1]})"
                                      f"<extra>{name}</extra>")
    fig.update_xaxes(title_text="cumulative training seconds (epoch times, evaluation included)")
    fig.update_yaxes(title_text="validation accuracy")
    return ("time-to-accuracy", "Time to accuracy", _provenance(df[df["run_id"].isin(wide["run_id"])]),
            "Validation accuracy after each epoch against the seconds spent so far (mean over seeds and runs, "
            "± std).", _layout(fig))


def _kernel_history(df, colours):
    import numpy as np
    import plotly.graph_objects as go

    k = df[(df["kind"] == "kernel") & (df["status"] == "ok")]
    if k.empty:
        return None
    order = list(compare.run_starts(k).sort_values().index)
    case = ["suite", "family", "variant", "size", "dtype", "device_name"]
    per_run = k.groupby([*case, "run_id"], sort=False)["time_median_s"].mean().reset_index()
    per_run["ratio"] = per_run["time_median_s"] / per_run.groupby(case)["time_median_s"].transform("median")
    per_run["trace"] = per_run.apply(_label(per_run, ["family", "variant"]), axis=1)
    fig = go.Figure()
    symbols = {f: SYMBOLS[i % len(SYMBOLS)] for i, f in enumerate(sorted(set(per_run["family"])))}
    dashes = _dashes(per_run)
    for name, g in per_run.groupby("trace", sort=False):
        first = g.iloc[0]  # the variant's colour; the family's marker symbol; the device's dash
        geo = g.groupby("run_id")["ratio"].apply(lambda r: float(np.exp(np.log(r).mean()))).reindex(order).dropna()
        fig.add_scatter(x=list(geo.index), y=geo.to_numpy(), mode="lines+markers", name=name,
                        line={"color": colours["variant"][first["variant"]], "dash": dashes[first["device_name"]]},
                        marker={"symbol": symbols[first["family"]], "size": 7},
                        hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>")
    worse = _regressions(k, order, per_run)
    if len(worse):
        fig.add_scatter(x=worse["run_id"], y=worse["ratio"], mode="markers", name="regression",
                        marker={"symbol": "x", "size": 8, "color": "#d62728", "opacity": 0.6},
                        text=worse["text"], hovertemplate="%{text}<extra>regression</extra>")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, title_text="run (oldest first)")
    fig.update_yaxes(type="log", title_text="time / the case's median over runs")
    return ("kernel-history", "History of kernel timings across runs", _provenance(k),
            f"Per family and variant: the geometric mean over sizes of each case's time relative to its median over "
            f"the runs shown (1 = typical, above = slower). Red crosses: a case slower than in the previous run "
            f"beyond the run-to-run spread and by {compare.MIN_CHANGE:.0%} or more (harness report's 'worse'); "
            f"{len(worse)} marked.", _layout(fig))


def _regressions(k, order, per_run):
    """Cases whose time got worse from one run to the next, by harness.views.compare's rule."""
    import pandas as pd

    found = []
    for before, after in zip(order, order[1:]):
        c = compare.compare(k[k["run_id"].isin([before, after])], by="run")
        c = c[(c["metric"] == "time_median_s") & (c["verdict"] == "worse")]
        found += [{"run_id": after, "suite": r.suite, "family": r.family, "variant": r.variant, "size": r.size,
                   "text": f"{r.family}/{r.variant} {r.size}: {r.change:+.0%} vs {before}"} for r in c.itertuples()]
    if not found:
        return pd.DataFrame(columns=["run_id", "ratio", "text"])
    ratios = per_run[["run_id", "suite", "family", "variant", "size", "ratio"]]
    return pd.DataFrame(found).merge(ratios, on=["run_id", "suite", "family", "variant", "size"], how="left")


def _layout(fig):
    fig.update_layout(template="plotly_white", height=430, margin={"l": 60, "r": 20, "t": 40, "b": 50},
                      legend={"orientation": "h", "y": -0.22})
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _page(df, sections) -> str:
    import plotly
    from plotly.offline import get_plotlyjs

    runs = df.groupby("run_id", sort=False).agg(suite=("suite", "first"), commit=("commit", "first"),
                                                device=("device_name", "first"), rows=("status", "size"))
    starts = compare.run_starts(df)
    run_rows = "".join(f"<tr><td>{escape(r)}</td><td>{escape(str(x.suite))}</td><td>{starts[r]:%Y-%m-%d %H:%M}Z</td>"
                       f"<td>{escape(str(x.commit))}</td><td>{escape(str(x.device))}</td><td>{x.rows}</td></tr>"
                       for r, x in runs.loc[starts.sort_values().index].iterrows())
    body = []
    for anchor, title, provenance, note, fig in sections:
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=anchor,
                          config={"displaylogo": False, "responsive": True})
        body.append(f'<section><h2 id="{anchor}-title">{escape(title)}</h2>'
                    f'<p class="provenance">{escape(provenance)}</p><p class="note">{escape(note)}</p>{div}</section>')
    nav = " · ".join(f'<a href="#{a}-title">{escape(t)}</a>' for a, t, *_ in sections)
    built = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>harness dashboard</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:2px 8px;font-size:90%}}th{{background:#f4f4f4}}
.provenance{{color:#555;font-size:90%;margin:0}}.note{{font-size:90%;margin:.3em 0}}section{{margin-top:1.5em}}</style>
<script type="text/javascript">{get_plotlyjs()}</script></head>
<body><h1>harness dashboard</h1>
<p>{df['run_id'].nunique()} runs, built {built} by <code>python -m harness dashboard</code> (plotly
{plotly.__version__}, embedded: this page needs no network). {nav}</p>
<table><tr><th>run</th><th>suite</th><th>started</th><th>commit</th><th>device</th><th>rows</th></tr>{run_rows}</table>
{''.join(body)}
</body></html>
"""
