"""The headline that opens report.md and report.html: what ran, how long it took, the main result
of every experiment in one line, the suite's note, and the rows that failed or are noisy.

Everything comes from the results table, env.json and the resolved suite (suite.yaml): a kernel
experiment reads "vectorized 20.1–2,870× over `loop`, native …; native fastest at every size" (the
range over sizes of each variant's median speedup over the baseline, and which variant has the
lowest median time at which sizes, sizes ordered by their FLOPs); a training experiment reads
"val acc 0.812 after 10 epochs (best 0.830), 4,100 img/s".
"""
from __future__ import annotations

import datetime as dt
import json

from harness.run.formats import fmt_duration, fmt_mean_std, fmt_ratio, fmt_time

BAD = ("failed", "diverged")
MAX_LISTED = 10  # failed rows named one by one; the rest are counted
MAX_NOISY_LISTED = 5  # more noisy rows than this are counted per experiment
MAX_ERROR_CHARS = 200


def headline(df, env: dict, suite: dict | None = None) -> list[str]:
    """The '## At a glance' section (markdown lines) for a non-empty results table. A summary that
    cannot be made (a bug meeting unforeseen data) says so in its place: the tables still follow."""
    try:
        return _headline(df, env, suite or {})
    except Exception as e:  # noqa: BLE001 - the report of a finished run is never lost to its headline
        return ["## At a glance", "", f"- (the headline could not be made: {type(e).__name__}: {e}; "
                                      f"the details and tables below are complete)"]


def _headline(df, env: dict, suite: dict) -> list[str]:
    lines = ["## At a glance", "", _what_ran(df, env, suite)]
    took = _took(df, env)
    if took:
        lines.append(took)
    if suite.get("note"):
        lines.append(f"- **Note:** {' '.join(str(suite['note']).split())}")
    for exp_id, g in df.groupby("experiment", sort=False):
        kind = g["kind"].iloc[0]
        summary = {"kernel": _kernel, "train": _train, "learn_kernel": _learn}.get(kind, _statuses)(g)
        lines.append(f"- `{exp_id}`{_what(exp_id, g)}: {summary}")
    lines += _problems(df)
    return lines


def _what_ran(df, env: dict, suite: dict) -> str:
    import pandas as pd

    first = df.iloc[0]
    name = f"suite `{first['suite']}`" + (f" ({suite['description']})" if suite.get("description") else "")
    n_exp = df["experiment"].nunique()
    threads = ""
    if first["device"] == "cpu" and not pd.isna(first["threads"]):
        threads = f", {first['threads']} thread{'s' * int(first['threads'] != 1)}"
    where = f"{first['device']} ({first['device_name']}{threads})"
    modes = ", ".join(sorted(set(df["determinism"].dropna())))
    precisions = sorted(set(df["precision"].dropna()))
    extra = f", {'/'.join(precisions)}" if precisions else ""
    if env.get("merged_from"):
        extra += f"; merged from {len(env['merged_from'])} shards"
    elif not pd.isna(first["shard"]) and first["shard"] != "0/1":
        extra += f"; shard {first['shard']}"
    return (f"- **Ran:** {name}: {n_exp} experiment{'s' * (n_exp != 1)}, {len(df)} rows, on {where}, "
            f"{modes} determinism{extra}")


def _took(df, env: dict) -> str:
    work = df["wall_s"].dropna().sum()
    start, end = _when(env.get("started_at")), _when(env.get("finished_at"))
    if start and end and end >= start:
        return (f"- **Took:** {fmt_duration((end - start).total_seconds())} from start to finish "
                f"({start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC); the rows themselves {fmt_duration(work)}")
    return f"- **Took:** {fmt_duration(work)} in the rows themselves" if work > 0 else ""


def _when(text) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text)).astimezone(dt.timezone.utc) if text else None
    except ValueError:
        return None


def _what(exp_id: str, g) -> str:
    """' (kernel `corr2d`)', ' (model `vgg`)'; nothing where the id says it (a model named as its experiment)."""
    kind = g["kind"].iloc[0]
    if kind == "kernel":
        return f" (kernel `{g['family'].iloc[0]}`)"
    if kind == "train":
        model = g["model"].dropna()
        return "" if model.empty or exp_id.split("[")[0] == model.iloc[0] else f" (model `{model.iloc[0]}`)"
    return f" ({kind})"


def _statuses(g) -> str:
    return ", ".join(f"{n} {s}" for s, n in g["status"].value_counts().items())


def _kernel(g) -> str:
    import pandas as pd

    ok = g[(g["status"] == "ok") & g["time_median_s"].notna()]
    if ok.empty:
        return f"nothing timed ({_statuses(g)})"
    baseline = g["baseline"].dropna().iloc[0] if g["baseline"].notna().any() else None
    flops = g.groupby("size", sort=False)["flops"].median()
    order = sorted(flops.index, key=lambda s: (pd.isna(flops[s]), 0 if pd.isna(flops[s]) else flops[s]))
    cells = ok.groupby(["size", "variant"], sort=False).agg(time=("time_median_s", "median"),
                                                           speedup=("speedup", "median"))
    variants = list(dict.fromkeys(ok["variant"]))
    parts = []
    for v in variants:
        if v == baseline:
            continue
        s = cells.xs(v, level="variant")["speedup"].dropna()
        if len(s):
            lo, hi = s.min(), s.max()
            span = fmt_ratio(lo) if fmt_ratio(lo) == fmt_ratio(hi) else f"{fmt_ratio(lo)[:-1]}–{fmt_ratio(hi)}"
            parts.append(f"{v} {span} over `{baseline}`")
    if len(variants) == 1:
        t = cells["time"]
        span = fmt_time(t.min()) if t.min() == t.max() else f"{fmt_time(t.min())}–{fmt_time(t.max())}"
        parts.append(f"{variants[0]} {span} per call over {len(t)} size{'s' * (len(t) != 1)}")
    else:
        fastest = _fastest(cells, order)
        if fastest:
            parts.append(fastest)
    untimed = g[g["status"] != "ok"]
    for v, u in untimed.groupby("variant", sort=False):
        why = "/".join(sorted(set(u["status"])))
        parts.append(f"`{v}` not timed at {u['size'].nunique()} of {g['size'].nunique()} sizes ({why})")
    return "; ".join(parts)


def _fastest(cells, order: list[str]) -> str:
    """Which variant has the lowest median time, size by size (in `order`), as runs of sizes."""
    runs: list[tuple[str, list[str]]] = []
    for size in order:
        if size not in cells.index.get_level_values("size"):
            continue
        times = cells.xs(size, level="size")["time"].dropna()
        if len(times) < 2:  # one variant timed here: nothing to compare
            continue
        best = times.idxmin()
        if runs and runs[-1][0] == best:
            runs[-1][1].append(size)
        else:
            runs.append((best, [size]))
    if not runs:
        return ""
    if len(runs) == 1:
        best, sizes = runs[0]
        return f"{best} fastest at every size" if len(sizes) > 1 else f"{best} fastest at {sizes[0]}"
    if len(runs) == 2:
        (a, first), (b, second) = runs
        return f"{a} fastest up to {first[-1]}, {b} from {second[0]}"
    wins: dict[str, int] = {}  # the lead changes hands more than once: count, and name the largest size's
    for v, sizes in runs:
        wins[v] = wins.get(v, 0) + len(sizes)
    ranked = sorted(wins.items(), key=lambda kv: -kv[1])
    (top, n), rest = ranked[0], ranked[1:]
    return (f"{top} fastest at {n} of {sum(wins.values())} sizes, " + ", ".join(f"{v} at {k}" for v, k in rest)
            + f" (at the largest, {runs[-1][1][-1]}: {runs[-1][0]})")


def _train(g) -> str:
    ok = g[g["status"] == "ok"]
    if ok.empty:
        return f"no result ({_statuses(g)})"
    epochs = ok["epochs"].dropna()
    after = f" after {int(epochs.iloc[0])} epoch{'s' * (int(epochs.iloc[0]) != 1)}" if len(epochs) else ""
    seeds = f" (mean ± std over {len(ok)} seeds)" if len(ok) > 1 else ""
    acc, best = fmt_mean_std(ok["val_acc"], "{:.3f}"), fmt_mean_std(ok["best_val_acc"], "{:.3f}")
    out = (f"val acc {acc}{after}{seeds}{f' (best {best})' if best not in (acc, '—') else ''}, "
           f"{fmt_mean_std(ok['images_per_s'], '{:,.0f}')} img/s")
    if ok["time_to_target_s"].notna().any():
        out += f", target accuracy after {fmt_mean_std(ok['time_to_target_s'], '{:.1f}')} s"
    if len(ok) < len(g):
        out += f"; {_statuses(g[g['status'] != 'ok'])}"
    return out


def _learn(g) -> str:
    out = []
    for r in g.itertuples():
        if r.status != "ok":
            out.append(f"seed {r.seed} {r.status}")
            continue
        try:
            weights = ", ".join(f"{w:.3f}" for w in json.loads(r.learned_kernel))
        except (TypeError, ValueError):
            weights = "?"
        out.append(f"seed {r.seed}: learned [{weights}] (target [1, -1]), final loss {r.loss_final:.3g}")
    return "; ".join(out)


def _problems(df) -> list[str]:
    bad = df[df["status"].isin(BAD)]
    noisy = df[df["noisy"].fillna(False).astype(bool)]
    if bad.empty and noisy.empty:
        return ["- **Failed or noisy rows:** none"]
    lines = []
    if len(bad):
        lines.append(f"- **Failed ({_rows(len(bad))}):**")
        lines += [f"  - `{r.experiment}` {r.variant} {r.size}: {_error(r)}" for r in bad.head(MAX_LISTED).itertuples()]
        if len(bad) > MAX_LISTED:
            lines.append(f"  - … and {len(bad) - MAX_LISTED} more (in the tables below)")
    if len(noisy) > MAX_NOISY_LISTED:  # a busy machine: per experiment, and its worst row
        lines.append(f"- **Noisy ({len(noisy)} of {len(df)} rows):** IQR over 10% of the median; a busy machine?")
        for exp_id, g in noisy.groupby("experiment", sort=False):
            w = g.loc[(g["time_iqr_s"] / g["time_median_s"]).idxmax()]
            lines.append(f"  - `{exp_id}`: {len(g)} of {int((df['experiment'] == exp_id).sum())} rows; the worst: "
                         f"{w['variant']} {w['size']}, {_spread(w['time_iqr_s'], w['time_median_s'])}")
    elif len(noisy):
        lines.append(f"- **Noisy ({_rows(len(noisy))}):**")
        lines += [f"  - `{r.experiment}` {r.variant} {r.size}: {_spread(r.time_iqr_s, r.time_median_s)}"
                  for r in noisy.itertuples()]
    return lines


def _rows(n: int) -> str:
    return f"{n} row{'s' * (n != 1)}"


def _error(r) -> str:
    first = next((line.strip() for line in str(r.error or "").splitlines() if line.strip()), "(no message)")
    first = first if len(first) <= MAX_ERROR_CHARS else first[:MAX_ERROR_CHARS] + "…"
    return f"**{r.status}** — {first}"


def _spread(iqr: float, median: float) -> str:
    return f"IQR {iqr / median:.0%} of the median ({fmt_time(median)})"
