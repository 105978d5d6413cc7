"""What determinism says across runs (`python -m harness report`): whether two sides' training
fingerprints are identical, and what strict mode costs against fast mode.

- `fingerprints(df, sides)`: per training experiment (its id: name and matrix point) and seed on both
  sides of a comparison (harness.views.compare.pick_sides), the fingerprints of its ok rows
  (sha256 over the final weights and the per-epoch loss/accuracy trace: equal iff bitwise equal)
  and whether they are identical, with the recorded settings that differ whatever the verdict.
- `determinism_cost(df)`: the same network (experiment name without seed, model, epochs, batch, lr,
  input size, device) run in both modes (strict and fast, e.g. suites/training.yaml and
  training-fast.yaml): validation accuracy fast - strict (means over seeds and runs) and the speed
  ratio, fast images/s over strict images/s.
"""
from __future__ import annotations

from harness.views.compare import SIDES, prepared

SETTINGS = {"dataset_digest": "data", "device_name": "device", "epochs": "epochs", "batch_size": "batch", "lr": "lr",
            "resize": "input size", "precision": "precision", "determinism": "mode", "threads": "threads",
            "commit": "commit"}
COST_KEYS = ["name", "model", "epochs", "batch_size", "lr", "resize", "device_name"]


def fingerprints(df, sides):
    """One row per training experiment on both sides: fingerprints A and B, identical yes/no, what differs.
    None when there are no two sides or no fingerprinted training row on both."""
    import pandas as pd

    if sides is None:
        return None
    by, a, b = sides
    col = SIDES[by]
    t = prepared(df[(df["kind"] == "train") & (df["status"] == "ok") & df["fingerprint"].notna()])
    rows = []
    for (suite, exp, seed), g in t.groupby(["suite", "experiment", "seed"], sort=False):
        side = {v: g[g[col] == v] for v in (a, b)}
        if any(s.empty for s in side.values()):
            continue
        fa, fb = (sorted(set(side[v]["fingerprint"])) for v in (a, b))
        same = fa == fb and len(fa) == 1
        varies = len(fa) > 1 or len(fb) > 1
        differs = [label for k, label in SETTINGS.items() if k != col and
                   set(side[a][k].astype(str)) != set(side[b][k].astype(str))]
        rows.append({"suite": suite, "experiment": exp, "seed": seed, "mode": "/".join(sorted(set(g["determinism"]))),
                     "A": ", ".join(fa), "B": ", ".join(fb),
                     "identical": "yes" if same else "no (varies within a side)" if varies else "no",
                     "recorded differences": ", ".join(differs)})  # whatever the verdict
    if not rows:
        return None
    out = pd.DataFrame(rows)
    out.attrs["sides"] = sides
    return out


def determinism_cost(df):
    """Per network run in both modes: accuracy (fast - strict) and speed (fast / strict images/s); None
    when no network of the selection ran in both."""
    import pandas as pd

    t = prepared(df[(df["kind"] == "train") & (df["status"] == "ok")])
    if t.empty or set(t["determinism"].dropna()) < {"strict", "fast"}:
        return None
    t = t.assign(val_acc=t["val_acc"].astype("float64"), images_per_s=t["images_per_s"].astype("float64"))
    g = t.groupby([*COST_KEYS, "determinism"], sort=False, dropna=False).agg(
        n=("val_acc", "count"), val_acc=("val_acc", "mean"), images_per_s=("images_per_s", "mean"),
        precision=("precision", "first"), suites=("suite", lambda s: ", ".join(sorted(set(s)))))
    rows = []
    for key, modes in g.groupby(level=list(range(len(COST_KEYS))), sort=False, dropna=False):
        modes = modes.droplevel(list(range(len(COST_KEYS))))
        if not {"strict", "fast"} <= set(modes.index):
            continue
        s, f = modes.loc["strict"], modes.loc["fast"]
        rows.append(dict(zip(COST_KEYS, key)) | {
            "strict val_acc": s["val_acc"], "fast val_acc": f["val_acc"], "accuracy change": f["val_acc"] - s["val_acc"],
            "strict images/s": s["images_per_s"], "fast images/s": f["images_per_s"],
            "speed ratio": f["images_per_s"] / s["images_per_s"], "fast precision": f["precision"],
            "n strict": int(s["n"]), "n fast": int(f["n"]), "suites": f"{s['suites']} / {f['suites']}"})
    return pd.DataFrame(rows) if rows else None
