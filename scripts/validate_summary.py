"""The validation summary of scripts/gpu-validate.sh: one markdown page from its run directories.

    python scripts/validate_summary.py RUNS_DIR [--book DIR] [--out summary.md]

RUNS_DIR holds run directories (any depth: a suite's runs, or several suites'), as `run --out`
writes them; --book a folder of benchmarks/book_loop.py JSON files. Sections:

- Training: model x mode (strict / fast): validation accuracy, training and wall seconds,
  images/s, achieved TFLOP/s, MFU, peak memory, compile seconds; per suite run, the sum of
  training seconds (the "suite in about a minute" aim) and fast-vs-strict accuracy deltas.
- Determinism: every experiment that ran strict more than once, with its fingerprints: equal or not.
- The book's loop against ours (images/s, same GPU) when book JSON files are given.
- Kernels: spread (IQR / median) per case, the share of cases over 50 us under 2 %, and how each
  variant's time scales from the smallest to the largest size against its FLOPs (a variant whose
  time barely moves while its FLOPs grow is launch-bound there).
- The machine: GPU, driver, torch, CUDA, cuDNN (from the runs' env.json).

Runs on the GPU node (pandas only, no mlflow) and here, on the same directories.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's harness, not installed

from harness.run import results  # noqa: E402
from harness.run.report import fmt_pm, fmt_time  # noqa: E402


def run_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("results.parquet")})


def load(root: Path):
    import pandas as pd

    dirs = run_dirs(root)
    if not dirs:
        raise SystemExit(f"{root}: no run directories (results.parquet) below it")
    return pd.concat([results.load(d) for d in dirs], ignore_index=True), dirs


def training(df) -> list[str]:
    t = df[df["kind"] == "train"].copy()
    if t.empty:
        return []
    t["mode"] = t["determinism"] + " " + t["precision"]
    cols = {"val acc": ("val_acc", "{:.4f}", 1), "train s": ("train_time_s", "{:.1f}", 1),
            "wall s": ("wall_s", "{:.1f}", 1), "images/s": ("images_per_s", "{:,.0f}", 1),
            "TFLOP/s": ("achieved_tflops", "{:.1f}", 1), "MFU %": ("mfu", "{:.1f}", 100),
            "peak GiB": ("peak_mem_bytes", "{:.2f}", 2**-30), "compile s": ("compile_s", "{:.1f}", 1)}
    lines = ["## Training", "",
             "One row per run of an experiment. train s: the sum of epoch times (training and evaluation, "
             "compilation excluded); wall s: the whole row (data preparation, compilation, checkpoints); "
             "images/s: median over epochs; MFU against the GPU's dense peak for the precision.", "",
             "| suite | run | experiment | mode | status | " + " | ".join(cols) + " |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---:" for _ in cols) + " |"]
    for r in t.itertuples():
        cells = [_fmt(getattr(r, col), fmt, scale) for col, fmt, scale in cols.values()]
        lines.append(f"| {r.suite} | {r.run_id} | {r.experiment} | {r.mode} | {r.status} | " + " | ".join(cells) + " |")
    totals = t.groupby(["suite", "run_id"], sort=False).agg(train_s=("train_time_s", "sum"), wall_s=("wall_s", "sum"),
                                                             compile_s=("compile_s", "sum"), rows=("experiment", "size"))
    lines += ["", "Per suite run: training seconds summed over its experiments (compile seconds apart), and wall seconds.", "",
              "| suite | run | experiments | train s | compile s | wall s |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {s} | {run} | {r.rows} | {r.train_s:.1f} | {r.compile_s:.1f} | {r.wall_s:.1f} |"
              for (s, run), r in totals.iterrows()]
    strict = t[t["determinism"] == "strict"].groupby("model")["val_acc"].mean()
    fast = t[t["determinism"] == "fast"]
    if len(strict) and len(fast):
        lines += ["", "Fast against strict fp32 (validation accuracy, points; the aim is within 1):", ""]
        for r in fast.itertuples():
            if r.model in strict and r.val_acc == r.val_acc:
                delta = (r.val_acc - strict[r.model]) * 100
                lines.append(f"- `{r.experiment}` ({r.model}): {r.val_acc:.4f} vs {strict[r.model]:.4f}: "
                             f"{delta:+.2f} points{'' if abs(delta) <= 1 else ' (more than 1 point)'}")
    return lines + [""]


def determinism(df) -> list[str]:
    t = df[(df["kind"] == "train") & (df["determinism"] == "strict") & (df["status"] == "ok")]
    groups = [(key, g) for key, g in t.groupby(["suite", "experiment"], sort=False) if g["run_id"].nunique() > 1]
    if not groups:
        return ["## Determinism", "", "No strict experiment ran more than once.", ""]
    lines = ["## Determinism", "", "Strict mode, the same experiment in separate invocations: final weights and the "
             "per-epoch metric trace hashed (fingerprint).", ""]
    equal_all = True
    for (suite, exp), g in groups:
        fps = g["fingerprint"].tolist()
        equal = len(set(fps)) == 1
        equal_all &= equal
        lines.append(f"- `{suite}/{exp}`: {len(fps)} runs, fingerprints {', '.join(fps)}: "
                     f"**{'equal' if equal else 'DIFFERENT'}**")
    lines += ["", f"Result: {'every fingerprint equal' if equal_all else 'some fingerprints differ'}.", ""]
    return lines


def book(df, book_dir: Path | None) -> list[str]:
    files = sorted(book_dir.glob("*.json")) if book_dir and book_dir.is_dir() else []
    if not files:
        return []
    t = df[(df["kind"] == "train") & (df["status"] == "ok")]
    lines = ["## The book's loop against ours (same GPU, training images/s)", "",
             "The book: d2l 1.0.3's Trainer with its DataLoader (4 workers, per-image PIL resize), "
             "benchmarks/book_loop.py. Ours: median over epochs.", "",
             "| model | resize | epochs | book images/s | ours strict | ours fast | strict / book | fast / book |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for f in files:
        b = json.loads(f.read_text())
        model, resize = b["config"]["model"], b["config"]["resize"]
        ours = t[(t["model"] == model) & (t["resize"] == f"{resize[0]}x{resize[1]}")]
        strict = ours[ours["determinism"] == "strict"]["images_per_s"].median()
        fast = ours[(ours["determinism"] == "fast") & ~ours["experiment"].str.endswith("_nchw")]["images_per_s"].median()
        bk = b["train_images_per_s"]
        lines.append(f"| {model} | {resize[0]}x{resize[1]} | {b['config'].get('max_epochs', b['config'].get('epochs'))} | "
                     f"{bk:,.0f} | {_fmt(strict, '{:,.0f}')} | {_fmt(fast, '{:,.0f}')} | "
                     f"{_fmt(strict / bk, '{:.1f}x')} | {_fmt(fast / bk, '{:.1f}x')} |")
    return lines + [""]


def kernels(df) -> list[str]:
    k = df[(df["kind"] == "kernel") & (df["status"] == "ok")].copy()
    if k.empty:
        return []
    k["spread"] = k["time_iqr_s"] / k["time_median_s"]
    long = k[k["time_median_s"] > 50e-6]
    under = (long["spread"] < 0.02).sum()
    lines = ["## Kernels", "", f"{len(k)} cases timed. Spread = IQR / median of the timed blocks, median over "
             f"all cases {k['spread'].median():.2%}. Cases longer than 50 µs: {len(long)}"
             + (f", of which {under} ({under / len(long):.0%}) under 2 %, median spread {long['spread'].median():.2%}."
                if len(long) else "."), ""]
    worst = long.sort_values("spread", ascending=False).head(10)
    if len(worst):
        lines += ["Largest spreads among cases over 50 µs:", "", "| experiment | variant | size | median | spread |",
                  "| --- | --- | --- | ---: | ---: |"]
        lines += [f"| {r.experiment} | {r.variant} | {r.size} | {fmt_time(r.time_median_s)} | {r.spread:.1%} |"
                  for r in worst.itertuples()]
    lines += ["", "Scaling from the smallest to the largest size of each experiment and variant: time ratio "
              "against FLOP ratio (a time ratio far below the FLOP ratio: launch- or overhead-bound at the small "
              "size).", "", "| experiment | variant | smallest | largest | time ratio | FLOP ratio |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (exp, variant), g in k.groupby(["experiment", "variant"], sort=False):
        g = g.sort_values("flops")
        lo, hi = g.iloc[0], g.iloc[-1]
        if lo["flops"] and hi["flops"] > lo["flops"]:
            lines.append(f"| {exp} | {variant} | {fmt_time(lo.time_median_s)} ({lo['size']}) | "
                         f"{fmt_time(hi.time_median_s)} ({hi['size']}) | {hi.time_median_s / lo.time_median_s:,.1f} | "
                         f"{hi.flops / lo.flops:,.1f} |")
    return lines + [""]


def machine(dirs: list[Path]) -> list[str]:
    envs = [json.loads((d / "env.json").read_text()) for d in dirs if (d / "env.json").exists()]
    if not envs:
        return []
    e = envs[0]
    keys = ("gpu_name", "gpu_driver", "gpu_memory_gib", "gpu_capability", "torch", "cuda", "cudnn", "python",
            "cpu_model", "cpu_count", "git_commit", "git_dirty")
    return ["## Machine", "", *[f"- {k}: {e.get(k)}" for k in keys], ""]


def _fmt(value, fmt: str, scale: float = 1.0) -> str:
    """One number as the reports print it ('—' when missing)."""
    import pandas as pd

    return fmt_pm(None if pd.isna(value) else value * scale, None, fmt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, help="folder holding run directories")
    p.add_argument("--book", type=Path, help="folder of benchmarks/book_loop.py JSON files")
    p.add_argument("--out", type=Path, help="write here (default: print)")
    args = p.parse_args(argv)
    df, dirs = load(args.runs)
    text = "\n".join(["# Validation summary", "", *machine(dirs), *training(df), *determinism(df),
                      *book(df, args.book), *kernels(df)])
    if args.out:
        results.atomic_write_text(args.out, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
