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
        f"- rows: {len(df)} (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")",
        "",
        "Times are the median seconds per call (± IQR as % of the median, n timed blocks) from "
        "torch.utils.benchmark; speedup is the baseline variant's median over each variant's.",
    ]
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
        return f"{fmt_time(median)} ±{spread:.0f}% (n={int(ok['n_measurements'].median())})"

    def speedup_cell(ok) -> str:
        s = ok["speedup"].median()
        return "—" if pd.isna(s) else f"{s:.3g}×"

    out = ["", f"## {exp_id} — kernel `{family}`", "", "Median time per call:", "", cell_table(time_cell),
           "", f"Speedup over `{baseline}`:", "", cell_table(speedup_cell),
           "", "GFLOP/s:", "", cell_table(lambda ok: f"{ok['gflops'].median():.3g}")]
    notes = g[g["status"] != "ok"].drop_duplicates(["variant", "size", "status", "error"])
    if len(notes):
        out += ["", "Not timed:", ""]
        out += [f"- `{r.variant}` at {r.size}: **{r.status}** — {r.error}" for r in notes.itertuples()]
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
