"""Comparison across runs: results tables of many runs (run directories, or the MLflow store)
in one DataFrame, aggregated over seeds and runs, and two runs (or commits, or devices) compared.

    python -m harness report [RUN_DIR ...] [--suite S] [--since DATE] [--by run|commit|device]
                             [--format md|csv|html] [--out FILE] [--from-mlflow [--tracking-uri URI]]

The numbers (harness.views.report.runs_report formats them):

- kernels, per suite x family x baseline x dtype x device x size x variant: mean and std (n-1) over
  the `ok` rows of every selected run and seed, of `speedup` and of `time_median_s`;
- models, per suite x experiment x training settings x device: mean and std over the `ok` rows
  (seeds, runs) of accuracy, images/s, peak memory, time to target and training time;
- a comparison of side A (the older) with side B: for each case present on both sides,
  change = (mean_B - mean_A) / mean_A. A side's spread is the std over its rows when it has two or
  more (run-to-run or seed-to-seed), else the spread inside its single measurement: the IQR of the
  timed blocks for a kernel time, speedup x (IQR/median of the variant + IQR/median of the
  baseline) for a speedup, unknown for a single training row. The change is beyond the spread
  when |mean_B - mean_A| > max(spread_A, spread_B); the verdict is better/worse only when it is
  beyond the spread and over MIN_CHANGE (a noise-only threshold would flag every tiny shift).
"""
from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

from harness.run import results
from harness.core.errors import UserError
from harness.run.report import TRAIN_KEYS

RESULTS_FILES = ("results.parquet", "results.csv")
KERNEL_KEYS = ["suite", "family", "baseline", "dtype", "device_name", "size", "variant"]
MODEL_KEYS = ["suite", "name", *TRAIN_KEYS, "device_name"]
MODEL_METRICS = ["val_acc", "best_val_acc", "images_per_s", "peak_mem_bytes", "time_to_target_s", "train_time_s"]
SIDES = {"run": "run_id", "commit": "commit", "device": "device_name"}
# metrics compared between two sides, and whether higher is better
COMPARED = {"kernel": {"time_median_s": False, "speedup": True},
            "train": {"val_acc": True, "images_per_s": True, "epoch_time_s": False, "peak_mem_bytes": False,
                      "time_to_target_s": False}}
CASE_KEYS = {"kernel": ["suite", "family", "baseline", "dtype", "size", "variant"],
             "train": ["suite", "name", *TRAIN_KEYS]}
MIN_CHANGE = 0.05


def find_runs(paths: list[Path], suite: str | None = None) -> list[Path]:
    """Run directories (or results files) under `paths`: each is a results file, a run directory,
    a suite directory of runs or a results root of suites; `results/` when no path is given.
    A results file found under a root that cannot be read (damaged, foreign, another schema version)
    is named in a warning on stderr and skipped; one named itself is an error (`load_checked`)."""
    return [path for path, _ in scan(paths, suite)]


def scan(paths: list[Path], suite: str | None = None) -> list[tuple[Path, object]]:
    """find_runs' runs with their results tables, each read once."""
    roots = [Path(p) for p in paths] or [Path("results")]
    found: list[tuple[Path, object]] = []
    skipped = 0
    for root in roots:
        if not root.exists():
            raise UserError(f"{root}: no such file or directory; give run directories such as "
                            f"results/<suite>/<UTC time>-<id>, or a results root")
        if root.is_file() or _is_run(root):
            found.append((root, load_checked(root)))
            continue
        runs = [d for d in sorted(root.glob("*")) if _is_run(d)] + [d for d in sorted(root.glob("*/*")) if _is_run(d)]
        kept = [d for d in runs if suite in (None, d.parent.name) or d.parent == root]
        if runs and not kept:
            raise UserError(f"{root}: no results match --suite {suite} "
                            f"(suites found: {', '.join(sorted({d.parent.name for d in runs}))})")
        for run in kept:
            try:
                found.append((run, load_checked(run)))
            except UserError as e:  # one bad file among many: the others are still worth reading
                print(f"warning: {e}; skipped", file=sys.stderr)
                skipped += 1
    if not found:
        where = ", ".join(map(str, roots))
        if skipped:
            raise UserError(f"{where}: no readable results ({skipped} results file(s) skipped, named above)")
        raise UserError(f"{where}: no results found (looked for <suite>/<run>/results.parquet); run a suite "
                        f"first, e.g. python -m harness run suites/smoke.yaml")
    return list({path: (path, df) for path, df in found}.values())


def _is_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in RESULTS_FILES)


def load_checked(path: Path):
    """The results table of a run directory or results file, validated (harness.run.runfiles:
    damaged, foreign, another schema version or a wrong type is a UserError naming the file)."""
    from harness.run.runfiles import read_results

    return read_results(path)


def parse_since(text: str | None) -> dt.datetime | None:
    """--since: a date or an ISO time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--since {text!r}: not a date; give YYYY-MM-DD or an ISO time, "
                        f"e.g. 2026-11-24 or 2026-11-24T17:50") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def load_runs(paths: list[Path], suite: str | None = None, since: str | None = None):
    """The results tables of the runs under `paths` (schema-checked by results.load), in one frame."""
    import pandas as pd

    when = parse_since(since)
    frames = [df for _, df in scan(paths, suite)]
    frame = pd.concat([df for df in frames if len(df)] or frames, ignore_index=True)
    return select(frame, suite, when, where=", ".join(map(str, paths)) or "results", runs=len(frames))


def load_mlflow(tracking_uri: str, suite: str | None = None, since: str | None = None):
    """The same frame rebuilt from the runs `run` logged to an MLflow store or server."""
    from harness.track.mlflow_results import search_results

    when = parse_since(since)
    return select(search_results(tracking_uri, suite), suite, when, where=tracking_uri)


def select(df, suite: str | None, since: dt.datetime | None, where: str, runs: int = 0):
    """Rows of `suite` and of runs started at or after `since`; an empty selection is an input error."""
    suites = sorted(set(df["suite"].dropna()))
    if df.empty and runs:
        raise UserError(f"{where}: no finished rows yet: the {runs} run(s) found stopped before their first "
                        f"row; continue one with `python -m harness run SUITE --resume RUN_DIR`")
    if suite is not None:
        df = df[df["suite"] == suite]
    if since is not None and len(df):
        starts = run_starts(df)
        df = df[df["run_id"].isin(starts[starts >= since].index)]
    if df.empty:
        wanted = " ".join(f"{k} {v}" for k, v in (("--suite", suite), ("--since", since)) if v is not None)
        raise UserError(f"{where}: no results match {wanted or 'the selection'} "
                        f"(suites found: {', '.join(suites) or 'none'})")
    return df.reset_index(drop=True)


def run_starts(df):
    """Each run's start: the earliest started_at of its rows (UTC)."""
    import pandas as pd

    return pd.to_datetime(df["started_at"], utc=True, errors="coerce").groupby(df["run_id"]).min()


def base_name(experiment: str) -> str:
    """An experiment id without its seed: 'lenet[seed=1]' -> 'lenet', 'x[lr=0.1,seed=2]' -> 'x[lr=0.1]'."""
    m = re.fullmatch(r"(.*)\[(.*)\]", experiment)
    if not m:
        return experiment
    rest = [p for p in re.split(r",(?=\w+=)", m.group(2)) if not p.startswith("seed=")]
    return f"{m.group(1)}[{','.join(rest)}]" if rest else m.group(1)


def prepared(df):
    """Adds `name` (experiment without seed), `commit` (short, +dirty) and each row's own noise."""
    out = df.copy()
    out["name"] = out["experiment"].map(base_name).astype("string")
    dirty = out["git_dirty"].fillna(False).astype(bool).map({True: "+dirty", False: ""})
    out["commit"] = (out["git_commit"].fillna("unknown").str[:10] + dirty).astype("string")
    rel_iqr = out["time_iqr_s"] / out["time_median_s"]
    base = out.assign(_base_rel=rel_iqr)[(out["variant"] == out["baseline"]).fillna(False)]
    base = base.drop_duplicates(["run_id", "experiment", "size", "seed"])
    merged = out[["run_id", "experiment", "size", "seed"]].merge(
        base[["run_id", "experiment", "size", "seed", "_base_rel"]], how="left")
    out["noise_time_median_s"] = out["time_iqr_s"]
    out["noise_speedup"] = out["speedup"] * (rel_iqr + merged["_base_rel"].to_numpy())
    return out


def kernel_summary(df):
    """Per kernel case: n ok rows, runs, mean/std of the median time and of the speedup, statuses."""
    k = prepared(df[df["kind"] == "kernel"])
    ok = k["status"] == "ok"
    k = k.assign(t=k["time_median_s"].where(ok), s=k["speedup"].where(ok))
    out = k.groupby(KERNEL_KEYS, sort=False, dropna=False).agg(
        n=("t", "count"), runs=("run_id", "nunique"), time_mean_s=("t", "mean"), time_std_s=("t", "std"),
        speedup_mean=("s", "mean"), speedup_std=("s", "std"),
        status=("status", lambda s: "/".join(sorted(set(s)))))
    return out.reset_index()


def model_summary(df):
    """Per model and setting: n ok rows, seeds, runs, mean and std of MODEL_METRICS, statuses."""
    t = prepared(df[df["kind"] == "train"])
    ok = t["status"] == "ok"
    t = t.assign(**{m: t[m].astype("float64").where(ok) for m in MODEL_METRICS})
    aggs = {"n": ("val_acc", "count"), "seeds": ("seed", "nunique"), "runs": ("run_id", "nunique")}
    for m in MODEL_METRICS:
        aggs |= {f"{m}_mean": (m, "mean"), f"{m}_std": (m, "std")}
    out = t.groupby(MODEL_KEYS, sort=False, dropna=False).agg(
        **aggs, status=("status", lambda s: ", ".join(f"{n} {k}" for k, n in s.value_counts().items())))
    return out.reset_index()


def pick_sides(df, by: str | None = None):
    """(by, side A, side B): two runs, else two commits; or exactly two of what --by names; A is the older."""
    df = prepared(df)
    if by is None:
        by = next((b for b in ("run", "commit") if df[SIDES[b]].nunique() == 2), None)
        if by is None:
            return None
    if by not in SIDES:
        raise UserError(f"--by {by}: unknown (valid: {', '.join(SIDES)})")
    values = list(df[SIDES[by]].dropna().unique())
    if len(values) != 2:
        raise UserError(f"--by {by}: the selection holds {len(values)} {by}s ({', '.join(map(str, values))}); "
                        f"select results of exactly two")
    starts = df.assign(start=df["run_id"].map(run_starts(df))).groupby(SIDES[by])["start"].min()
    a, b = sorted(values, key=lambda v: (starts[v], str(v)))
    return by, a, b


def compare(df, by: str | None = None):
    """One row per case x metric present on both sides: means, stds, n, change, spread, verdict.
    None when --by is not given and the selection is not two runs, or two commits, with cases in common."""
    import pandas as pd

    picked = pick_sides(df, by)
    if picked is None:
        return None
    asked, (by, a, b) = by, picked
    col, df = SIDES[by], prepared(df)
    parts = []
    for kind, metrics in COMPARED.items():
        rows = df[(df["kind"] == kind) & (df["status"] == "ok")]
        for metric, higher_better in metrics.items():
            m = rows[rows[metric].notna()]
            if metric == "speedup":
                m = m[(m["variant"] != m["baseline"]).fillna(True)]  # the baseline's is 1 by definition
            if m.empty:
                continue
            m = m.assign(value=m[metric].astype("float64"),
                         noise=m[f"noise_{metric}"] if f"noise_{metric}" in m else float("nan"))
            stats = m.groupby([*CASE_KEYS[kind], col], sort=False, dropna=False).agg(
                mean=("value", "mean"), std=("value", "std"), n=("value", "count"), noise=("noise", "first"),
                code=("code_hash", lambda s: ",".join(sorted(set(s.dropna())))))
            stats["spread"] = stats["std"].where(stats["n"] >= 2, stats["noise"])
            side = {v: stats.xs(v, level=col) for v in (a, b) if v in stats.index.get_level_values(col)}
            if len(side) < 2:
                continue
            j = side[a].merge(side[b], left_index=True, right_index=True, suffixes=("_a", "_b")).reset_index()
            j.insert(0, "kind", kind)
            j.insert(1, "case", _case_label(j, kind))
            j.insert(2, "metric", metric)
            j["higher_is_better"] = higher_better
            parts.append(j)
    if not parts and asked is None:  # e.g. a kernel run and a training run: nothing to compare
        return None
    if not parts:
        empty = pd.DataFrame(columns=["by", "side_a", "side_b", "kind", "metric", "change", "verdict"])
        empty.attrs["sides"] = (by, a, b)
        return empty
    out = pd.concat(parts, ignore_index=True)
    out["change"] = (out["mean_b"] - out["mean_a"]) / out["mean_a"]
    out["spread"] = out[["spread_a", "spread_b"]].max(axis=1)
    out["beyond_spread"] = ((out["mean_b"] - out["mean_a"]).abs() > out["spread"]).astype("boolean")
    out.loc[out["spread"].isna(), "beyond_spread"] = pd.NA
    out["verdict"] = [_verdict(r, pd.isna(r.beyond_spread)) for r in out.itertuples()]
    out["note"] = ["code changed" if r.code_a != r.code_b else "" for r in out.itertuples()]
    out.insert(0, "by", by)
    out.insert(1, "side_a", a)
    out.insert(2, "side_b", b)
    out = out.drop(columns=["noise_a", "noise_b", "code_a", "code_b"])
    out.attrs["sides"] = (by, a, b)
    return out


def _case_label(j, kind: str) -> list[str]:
    if kind == "kernel":
        return [f"{f}/{v} {s}" for f, v, s in zip(j["family"], j["variant"], j["size"])]
    return list(j["name"])


def _verdict(r, unknown: bool) -> str:
    if unknown:
        return "spread unknown"
    if not r.beyond_spread:
        return "within spread"
    if abs(r.change) < MIN_CHANGE:
        return f"under {MIN_CHANGE:.0%}"
    return "better" if (r.change > 0) == r.higher_is_better else "worse"
