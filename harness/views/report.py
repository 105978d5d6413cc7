"""Reports across runs (`python -m harness report`): kernels, models and a two-sided comparison as
markdown, html or csv; the numbers come from harness.views.compare."""
from __future__ import annotations

from pathlib import Path

from harness.run.report import fmt_pm, fmt_ratio, fmt_time

METRIC_FORMATS = {"time_median_s": fmt_time, "speedup": fmt_ratio, "val_acc": "{:.4f}".format,
                  "images_per_s": "{:,.0f}".format, "epoch_time_s": "{:.2f} s".format,
                  "peak_mem_bytes": lambda b: f"{b / 2**20:,.0f} MiB", "time_to_target_s": "{:.1f} s".format}
VERDICT_ORDER = ["worse", "better", "within spread", "under 5%", "spread unknown"]


def report_runs(paths, suite: str | None, since: str | None, fmt: str, by: str | None, out: Path | None,
                tracking_uri: str | None = None, from_mlflow: bool = False) -> str:
    """`harness report`: the runs (results files under `paths`, or the MLflow store), reported;
    the text itself, or (with `out`) written there and a line saying so."""
    from harness.core.io import atomic_write_text
    from harness.run.rundir import check_out
    from harness.views import compare

    if out is not None:
        check_out(out, "file", example=f"report.{fmt}")  # never into a run directory, before anything is read
    if from_mlflow:
        from harness.views.ui import store_uri

        df = compare.load_mlflow(store_uri(tracking_uri, Path("results")), suite, since)
    else:
        df = compare.load_runs(paths, suite, since)
    text = runs_report(df, fmt, by)
    if out is None:
        return text
    atomic_write_text(out, text)
    return f"report ({fmt}, {df['run_id'].nunique()} runs): {out}\n"


def runs_report(df, fmt: str = "md", by: str | None = None) -> str:
    """Kernels, models and (for two runs/commits/devices) a comparison, as markdown, html or csv."""
    import pandas as pd

    from harness.views import compare

    from harness.views import determinism

    kernels, models, comparison = compare.kernel_summary(df), compare.model_summary(df), compare.compare(df, by)
    prints = determinism.fingerprints(df, comparison.attrs["sides"] if comparison is not None else None)
    cost = determinism.determinism_cost(df)
    if fmt == "csv":  # the unformatted numbers, one table under the other
        tables = {"kernels": kernels, "models": models, "comparison": comparison, "fingerprints": prints,
                  "determinism_cost": cost}
        parts = [t.assign(table=name) for name, t in tables.items() if t is not None and len(t)]
        if not parts:
            return "table\n"
        both = pd.concat(parts, ignore_index=True)
        return both[["table", *both.columns.drop("table")]].to_csv(index=False)
    blocks = [("h1", f"Results of {df['run_id'].nunique()} runs"), ("table", _runs_table(df))]
    blocks += _kernel_blocks(kernels) + _model_blocks(models) + _comparison_blocks(comparison)
    blocks += _fingerprint_blocks(prints) + _cost_blocks(cost)
    return _html(blocks) if fmt == "html" else _markdown(blocks)


def _runs_table(df):
    from harness.views.compare import prepared, run_starts

    d = prepared(df)
    starts = run_starts(d)
    return (d.groupby("run_id", sort=False)
             .agg(suite=("suite", "first"), commit=("commit", "first"), device=("device_name", "first"),
                  rows=("status", "size"), ok=("status", lambda s: int((s == "ok").sum())))
             .assign(started=lambda t: t.index.map(lambda r: f"{starts[r]:%Y-%m-%d %H:%M}Z"))
             .sort_values("started").reset_index())


def _kernel_blocks(k) -> list:
    import pandas as pd

    out = []
    for (suite, family, baseline, dtype, device), g in k.groupby(["suite", "family", "baseline", "dtype", "device_name"],
                                                                  sort=False, dropna=False):
        sizes, variants = list(dict.fromkeys(g["size"])), list(dict.fromkeys(g["variant"]))

        def pivot(cell):
            t = pd.DataFrame(index=pd.Index(sizes, name="size"), columns=variants, dtype=object)
            for r in g.itertuples():
                t.loc[r.size, r.variant] = cell(r) if r.n else r.status
            return t.reset_index()

        def time_cell(r):
            spread = f" ±{r.time_std_s / r.time_mean_s:.0%}" if r.time_std_s == r.time_std_s else ""
            return fmt_time(r.time_mean_s) + spread + (f" (n={r.n})" if r.n > 1 else "")

        runs = int(g["runs"].max())
        out += [("h2", f"Kernel {family} — suite {suite}, {dtype} on {device}"),
                ("p", f"Speedup over `{baseline}` (mean ± std over {runs} run(s) and their seeds; — where the "
                      f"baseline was not timed):"),
                ("table", pivot(lambda r: "1×" if r.variant == baseline else
                                fmt_pm(r.speedup_mean, r.speedup_std, fmt_ratio))),
                ("p", "Median time per call (mean over runs and seeds, ± std as % of the mean):"),
                ("table", pivot(time_cell))]
    return out


def _model_blocks(m) -> list:
    if m.empty:
        return []
    cells = {"val_acc": ("val_acc", "{:.4f}", 1), "best val_acc": ("best_val_acc", "{:.4f}", 1),
             "images/s": ("images_per_s", "{:,.0f}", 1), "peak MiB": ("peak_mem_bytes", "{:,.0f}", 2**-20),
             "to target s": ("time_to_target_s", "{:.1f}", 1), "train s": ("train_time_s", "{:.1f}", 1)}
    table = m[["suite", "name", "model", "resize", "epochs", "batch_size", "lr", "device_name", "seeds", "runs"]].copy()
    for title, (col, fmt, scale) in cells.items():
        table[title] = [fmt_pm(a * scale, s * scale, fmt) for a, s in zip(m[f"{col}_mean"], m[f"{col}_std"])]
    table["status"] = m["status"]
    return [("h2", "Models"),
            ("p", "Mean ± std over seeds and runs (ok rows): validation accuracy after the last epoch and the best "
                  "over epochs, training images/s, peak memory (CUDA allocator, or process RSS on CPU), seconds "
                  "to the target accuracy, training seconds."),
            ("table", table.rename(columns={"device_name": "device", "batch_size": "batch"}))]


def _comparison_blocks(c) -> list:
    import pandas as pd

    if c is None:
        return [("p", "No comparison: select two runs, or the runs of two commits, with cases in common "
                      "(--by run|commit|device says which to compare).")]
    by, a, b = c.attrs["sides"]
    out = [("h2", f"Comparison by {by}: A = {a} → B = {b}")]
    if c.empty:
        return out + [("p", "The two sides have no case in common (same suite, experiment, size, variant).")]
    counts = c["verdict"].value_counts().sort_index(key=lambda v: v.map(lambda x: VERDICT_ORDER.index(x)
                                                                           if x in VERDICT_ORDER else 99))
    out.append(("p", f"change = (B − A) / A; beyond spread: |B − A| > the larger run-to-run spread of the two "
                     f"sides (std over rows, or the IQR of a single timing); better/worse also needs a change of "
                     f"5% or more. {', '.join(f'{n} {v}' for v, n in counts.items())}."))
    def side(mean, std, n, metric):
        f = METRIC_FORMATS[metric]
        return f(mean) + (f" ± {f(std)}" if std == std and n > 1 else "") + (f" (n={n})" if n > 1 else "")

    rows = [{"case": f"{r.suite}: {r.case}",
             "metric": r.metric, "A": side(r.mean_a, r.std_a, r.n_a, r.metric),
             "B": side(r.mean_b, r.std_b, r.n_b, r.metric),
             "change": _pct(r.change, "+"), "spread": "?" if r.spread != r.spread else "±" + _pct(r.spread / abs(r.mean_a)),
             "beyond spread": {True: "yes", False: "no"}.get(r.beyond_spread, "?"),
             "verdict": r.verdict + (f" ({r.note})" if r.note else "")} for r in c.itertuples()]
    return out + [("table", pd.DataFrame(rows))]


def _fingerprint_blocks(f) -> list:
    if f is None:
        return []
    by, a, b = f.attrs["sides"]
    same = int((f["identical"] == "yes").sum())
    return [("h2", f"Fingerprints by {by}: A = {a} → B = {b}"),
            ("p", f"{same} of {len(f)} training experiments (per seed) bitwise identical (same fingerprint: the final weights "
                  f"and every epoch's loss and accuracy). Each row lists the recorded settings that differ, whatever the verdict; "
                  f"`python -m harness reproduce RUN` says which apply to one run."),
            ("table", f)]


def _cost_blocks(c) -> list:
    if c is None:
        return []
    table = c.assign(**{
        "strict val_acc": c["strict val_acc"].map("{:.4f}".format), "fast val_acc": c["fast val_acc"].map("{:.4f}".format),
        "accuracy change": (c["accuracy change"] * 100).map("{:+.2f} pts".format),
        "strict images/s": c["strict images/s"].map("{:,.0f}".format), "fast images/s": c["fast images/s"].map("{:,.0f}".format),
        "speed ratio": c["speed ratio"].map("{:.2f}×".format)}).rename(columns={"device_name": "device", "batch_size": "batch"})
    return [("h2", "Determinism cost: strict vs fast"),
            ("p", "The same networks (name, model, epochs, batch, lr, input size, device) in both modes: validation "
                  "accuracy after the last epoch (mean over seeds and runs; change = fast − strict, in percentage "
                  "points) and training images/s (speed ratio = fast / strict). Fast mode trades bitwise "
                  "reproducibility for speed: its precision and compile settings are the fast suite's."),
            ("table", table)]


def _pct(x: float, sign: str = "") -> str:
    return f"{x:{sign},.0%}" if abs(x) >= 1 else f"{x:{sign}.1%}"


def _markdown(blocks) -> str:
    marks = {"h1": "# ", "h2": "## ", "p": ""}
    parts = [b.to_markdown(index=False) if kind == "table" else marks[kind] + b for kind, b in blocks]
    return "\n\n".join(parts) + "\n"


def _html(blocks) -> str:
    from html import escape

    body = "\n".join(b.to_html(index=False, border=0) if kind == "table" else f"<{kind}>{escape(b)}</{kind}>"
                     for kind, b in blocks)
    style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f3f3f3}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>harness report</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")
