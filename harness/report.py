"""Pandas reports of a results table: per kernel experiment, variants as columns and sizes as
rows, median time (with IQR as % of the median) and speedup over the baseline variant.

Rows that did not time (capped loops, failures) show their status in the cell and are listed
with their reason below the table, never silently dropped.
"""
from __future__ import annotations

import json


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def fmt_ratio(x: float) -> str:
    """A speedup: three significant digits, no exponent ('2,870×', '16.6×', '0.0957×')."""
    if abs(x) < 1e-9:  # a std of equal ratios that float division made 1e-14
        return "0×"
    return f"{x:,.0f}×" if abs(x) >= 100 else f"{x:.3g}×"


def fmt_pm(mean, std, fmt) -> str:
    """'mean ± std' with one format, the mean alone when std is missing (one value), '—' for none."""
    if mean is None or mean != mean:
        return "—"
    f = fmt if callable(fmt) else fmt.format
    return f(mean) + (f" ± {f(std)}" if std is not None and std == std else "")


def fmt_mean_std(values, fmt: str, scale: float = 1.0) -> str:
    """fmt_pm over the non-missing values of a Series (std with n-1, as pandas computes it)."""
    x = values.dropna().astype(float) * scale
    return fmt_pm(x.mean(), x.std() if len(x) > 1 else None, fmt) if len(x) else "—"


def run_report(df, env: dict, steps: list[dict]) -> str:
    if df.empty:
        return "# (no results)\n"
    first = df.iloc[0]
    counts = df["status"].value_counts().to_dict()
    git = (env.get("git_describe") or env.get("git_commit") or "not a git checkout")
    lines = [
        f"# {first['suite']} — run {first['run_id']}",
        "",
        f"- device: {first['device']} ({first['device_name']}); torch {env.get('torch')}, "
        f"CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}; threads {first['threads']}",
        f"- determinism: {', '.join(sorted(set(df['determinism'].dropna())))}; git {git}",
        f"- rows: {len(df)} (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
        + (f"; **{noisy} noisy** (IQR over 10% of the median)" if (noisy := int(df["noisy"].fillna(False).sum())) else ""),
    ]
    if env.get("load_avg_start") or env.get("load_avg_end"):
        lines.append(f"- load average (1, 5, 15 min): {env.get('load_avg_start')} at the start, "
                     f"{env.get('load_avg_end')} at the end")
    if (df["kind"] == "kernel").any():
        lines += ["", "Kernel times are the median seconds per call (± IQR as % of the median, n timed blocks) "
                      "from torch.utils.benchmark; speedup is the baseline variant's median over each variant's."]
    if (df["kind"] == "train").any():
        lines += _training_section(df[df["kind"] == "train"])
    for exp_id, g in df.groupby("experiment", sort=False):
        if g["kind"].iloc[0] == "kernel":
            lines += _kernel_section(exp_id, g)
        elif g["kind"].iloc[0] == "learn_kernel":
            lines += _learn_section(exp_id, g, [s for s in steps if s["experiment"] == exp_id])
    return "\n".join(lines) + "\n"


def _kernel_section(exp_id: str, g) -> list[str]:
    import pandas as pd

    family, baseline = g["family"].iloc[0], g["baseline"].iloc[0]
    sizes = list(dict.fromkeys(g["size"]))
    variants = list(dict.fromkeys(g["variant"]))

    def cell_table(fmt) -> str:
        table = pd.DataFrame(index=pd.Index(sizes, name="size"), columns=variants, dtype=object)
        for (size, variant), cell in g.groupby(["size", "variant"], sort=False):
            ok = cell[cell["status"] == "ok"]
            table.loc[size, variant] = fmt(ok) if len(ok) else "/".join(sorted(set(cell["status"])))
        return table.to_markdown()

    def time_cell(ok) -> str:
        median = ok["time_median_s"].median()
        spread = (ok["time_iqr_s"] / ok["time_median_s"]).median() * 100
        noisy = " **noisy**" if ok["noisy"].fillna(False).any() else ""
        return f"{fmt_time(median)} ±{spread:.0f}% (n={int(ok['n_measurements'].median())}){noisy}"

    def speedup_cell(ok) -> str:
        s = ok["speedup"].median()
        return "—" if pd.isna(s) else fmt_ratio(s)

    out = ["", f"## {exp_id} — kernel `{family}`", "", "Median time per call:", "", cell_table(time_cell),
           "", f"Speedup over `{baseline}`:", "", cell_table(speedup_cell),
           "", "GFLOP/s:", "", cell_table(lambda ok: f"{ok['gflops'].median():.3g}")]
    notes = g[g["status"] != "ok"].drop_duplicates(["variant", "size", "status", "error"])
    if len(notes):
        out += ["", "Not timed:", ""]
        out += [f"- `{r.variant}` at {r.size}: **{r.status}** — {r.error}" for r in notes.itertuples()]
    return out


TRAIN_KEYS = ["model", "resize", "epochs", "batch_size", "lr", "precision", "determinism"]


def _training_section(t) -> list[str]:
    """One row per model and setting; mean ± std over the seeds a matrix ran."""
    import pandas as pd

    def pm(col, fmt, scale=1.0):
        return lambda g: fmt_mean_std(g[col], fmt, scale)

    cells = {"val_acc": pm("val_acc", "{:.4f}"), "best_val_acc": pm("best_val_acc", "{:.4f}"),
             "train_loss": pm("train_loss", "{:.4f}"), "images/s": pm("images_per_s", "{:,.0f}"),
             "epoch s": pm("epoch_time_s", "{:.2f}"), "wall s": pm("wall_s", "{:.1f}"),
             "to target s": pm("time_to_target_s", "{:.1f}"), "peak MiB": pm("peak_mem_bytes", "{:,.0f}", 2**-20),
             "TFLOP/s": pm("achieved_tflops", "{:.2f}"), "MFU %": pm("mfu", "{:.1f}", 100),
             "compile s": pm("compile_s", "{:.1f}"),
             "params": lambda g: f"{int(g['params'].dropna().iloc[0]):,}" if g["params"].notna().any() else "—",
             "seeds": lambda g: str(g["seed"].nunique()),
             "status": lambda g: ", ".join(f"{n} {s}" for s, n in g["status"].value_counts().items())}
    table = pd.DataFrame([{**dict(zip(TRAIN_KEYS, key)), **{name: f(g) for name, f in cells.items()}}
                          for key, g in t.groupby(TRAIN_KEYS, sort=False, dropna=False)])
    out = ["", "## Training", "",
           "Per model: validation accuracy after the last epoch (mean ± std over seeds), best over epochs, "
           "training images/s (median over epochs, evaluation excluded), seconds per epoch, wall seconds, "
           "peak memory (CUDA allocator peak, or process RSS on CPU), achieved training TFLOP/s (forward + backward "
           "convolution and matrix FLOPs x images/s) and MFU against the GPU's dense peak for the precision "
           "(— for a CPU or a GPU the peak table does not know), first compiled step.", "",
           table.to_markdown(index=False)]
    bad = t[t["status"] != "ok"]
    if len(bad):
        out += ["", *[f"- `{r.experiment}`: **{r.status}** — {r.error}" for r in bad.itertuples()]]
    fps = t[["experiment", "fingerprint", "dataset_digest"]].dropna()
    if len(fps):
        out += ["", "Fingerprints (final weights + per-epoch metric trace):", "",
                *[f"- `{r.experiment}`: {r.fingerprint} (data {r.dataset_digest})" for r in fps.itertuples()]]
    return out


def _learn_section(exp_id: str, g, steps: list[dict]) -> list[str]:
    out = ["", f"## {exp_id} — learning the edge-detection kernel (d2l 7.2)", ""]
    for r in g.itertuples():
        if r.status != "ok":
            out.append(f"- seed {r.seed}: **{r.status}** — {r.error}")
            continue
        losses = [s["value"] for s in steps if s["metric"] == "loss" and s["seed"] == r.seed]
        kernel = json.loads(r.learned_kernel)
        out.append(f"- seed {r.seed}: learned kernel [{', '.join(f'{w:.4f}' for w in kernel)}] "
                   f"(target [1, -1]); loss after {len(losses)} iterations {r.loss_final:.3f}")
        out.append("  - loss per iteration: " + ", ".join(f"{x:.3f}" for x in losses))
    return out


# --- across runs (python -m harness report): the numbers come from harness.compare ---

METRIC_FORMATS = {"time_median_s": fmt_time, "speedup": fmt_ratio, "val_acc": "{:.4f}".format,
                  "images_per_s": "{:,.0f}".format, "epoch_time_s": "{:.2f} s".format,
                  "peak_mem_bytes": lambda b: f"{b / 2**20:,.0f} MiB", "time_to_target_s": "{:.1f} s".format}
VERDICT_ORDER = ["worse", "better", "within spread", "under 5%", "spread unknown"]


def runs_report(df, fmt: str = "md", by: str | None = None) -> str:
    """Kernels, models and (for two runs/commits/devices) a comparison, as markdown, html or csv."""
    import pandas as pd

    from harness import compare

    kernels, models, comparison = compare.kernel_summary(df), compare.model_summary(df), compare.compare(df, by)
    if fmt == "csv":  # the unformatted numbers, one table under the other
        tables = {"kernels": kernels, "models": models, "comparison": comparison}
        parts = [t.assign(table=name) for name, t in tables.items() if t is not None and len(t)]
        if not parts:
            return "table\n"
        both = pd.concat(parts, ignore_index=True)
        return both[["table", *both.columns.drop("table")]].to_csv(index=False)
    blocks = [("h1", f"Results of {df['run_id'].nunique()} runs"), ("table", _runs_table(df))]
    blocks += _kernel_blocks(kernels) + _model_blocks(models) + _comparison_blocks(comparison)
    return _html(blocks) if fmt == "html" else _markdown(blocks)


def _runs_table(df):
    from harness.compare import prepared, run_starts

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
