"""report.md of one run: per kernel experiment, variants as columns and sizes as rows, median
time (with IQR as % of the median) and speedup over the baseline variant; per model the training
numbers (mean ± std over seeds); the learned kernel. The number formats every view shares are
harness.run.formats (imported from here too).

It opens with the headline (harness.run.headline: what ran, how long, one line per experiment,
the suite's note, failed and noisy rows). Rows that did not time (capped loops, failures) show their
status in the cell and are listed with their reason below the table, never silently dropped.
`write_reports` writes report.md and report.html (harness.run.report_html: the same text and the
run's plots on one self-contained page). Reports across runs are harness.views.report.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.core.io import atomic_write_text
from harness.run import headline, report_html
from harness.run.formats import fmt_duration, fmt_mean_std, fmt_pm, fmt_ratio, fmt_time

# The formats are imported from here by the views too.
__all__ = ["write_reports", "run_report", "report_parts", "TRAIN_KEYS",
           "fmt_duration", "fmt_mean_std", "fmt_pm", "fmt_ratio", "fmt_time"]


def write_reports(run_dir: Path, df, env: dict, steps: list[dict], extra: str = "") -> None:
    """report.md and report.html of a run directory (its suite.yaml gives the description and the
    note); `extra`: markdown appended to both (merge's section on the shards)."""
    head, body = report_parts(df, env, steps, _resolved_suite(run_dir))
    text = "\n".join(head + body) + "\n" + extra
    atomic_write_text(run_dir / "report.md", text)
    title = f"{df['suite'].iloc[0]} — run {df['run_id'].iloc[0]}" if len(df) else run_dir.name
    experiments = list(dict.fromkeys(df["experiment"])) if len(df) else []
    atomic_write_text(run_dir / "report.html", report_html.page(
        title, "\n".join(head) + "\n", "\n".join(body) + "\n" + extra, run_dir, experiments))


def _resolved_suite(run_dir: Path) -> dict:
    """The run's suite.yaml (the resolved suite), or {} where it is missing or damaged."""
    import yaml

    try:
        suite = yaml.safe_load((run_dir / "suite.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return suite if isinstance(suite, dict) else {}


def run_report(df, env: dict, steps: list[dict], suite: dict | None = None) -> str:
    head, body = report_parts(df, env, steps, suite)
    return "\n".join(head + body) + "\n"


def report_parts(df, env: dict, steps: list[dict], suite: dict | None = None) -> tuple[list[str], list[str]]:
    """(title and headline, the rest: run details and the tables), as markdown lines."""
    if df.empty:
        return ["# (no results)"], []
    first = df.iloc[0]
    counts = df["status"].value_counts().to_dict()
    git = (env.get("git_describe") or env.get("git_commit") or "not a git checkout")
    head = [f"# {first['suite']} — run {first['run_id']}", "", *headline.headline(df, env, suite)]
    lines = [
        "",
        "## Details",
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
    return head, lines


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
