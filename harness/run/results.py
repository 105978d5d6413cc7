"""The results table: one row per experiment x variant x size x seed, with fixed columns.

This module owns the columns (name, dtype, unit, meaning) and the schema version; files are
written atomically (temp file + rename) as results.csv and results.parquet, and a file with
another schema version is refused with an instruction rather than misread. `load` reads one back
validated whole (size bound, foreign or missing columns, every value in its column's dtype): any
problem is a UserError naming the file (harness.run.runfiles reads a run's other files).
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.core.errors import UserError
from harness.core.jsonfile import check_file
from harness.core.io import atomic_write, atomic_write_all, atomic_write_json, atomic_write_text  # noqa: F401

SCHEMA_VERSION = 1
RESULTS_FILES = ("results.parquet", "results.csv")
DEVICE = r"(cpu|cuda|mps)(:[0-9]+)?"  # what a row (and env.json) may say it ran on
MAX_FILE_BYTES = 1 << 30  # read no further; a 10,000-row results file is a few MiB

# name: (pandas dtype, meaning with unit)
COLUMNS: dict[str, tuple[str, str]] = {
    "schema_version": ("Int64", "version of this column set"),
    "suite": ("string", "suite name"),
    "run_id": ("string", "invocation id: <UTC time>-<short id>, also the run directory's name"),
    "shard": ("string", "I/N: the shard of the suite that ran the row (run --shard; 0/1 the whole suite)"),
    "experiment": ("string", "experiment id (name, plus [field=value] under a matrix)"),
    "kind": ("string", "experiment kind: kernel | learn_kernel"),
    "family": ("string", "kernel family (corr2d, ...) or the experiment kind"),
    "variant": ("string", "implementation compared (loop, vectorized, native, ...)"),
    "size": ("string", "human label of the size point, e.g. 'in=32x32 k=3x3'"),
    "config": ("string", "the size point (kernels) or model_args and resize (training) as JSON"),
    "seed": ("Int64", "seed of the experiment"),
    "device": ("string", "cpu | cuda"),
    "device_name": ("string", "CPU model or GPU name"),
    "dtype": ("string", "tensor dtype timed"),
    "threads": ("Int64", "CPU threads torch used while timing"),
    "world_size": ("Int64", "processes training data-parallel (torchrun); 1 in a plain run"),
    "backend": ("string", "torch.distributed backend under torchrun: nccl (CUDA) | gloo (CPU); empty in a plain run"),
    "determinism": ("string", "determinism mode in force: strict | fast"),
    "status": ("string", "ok | failed | capped (a Python-loop variant over loop_max_iters, not run) | "
                         "diverged (training loss became NaN/inf)"),
    "error": ("string", "why the row failed or was capped; empty when ok"),
    "time_median_s": ("float64", "median seconds per call"),
    "time_iqr_s": ("float64", "interquartile range of seconds per call"),
    "n_measurements": ("Int64", "timed blocks behind the median (each the mean of several calls)"),
    "noisy": ("boolean", "kernel: IQR over median above 10% (harness.kernels.bench.NOISY_IQR): the machine "
                         "was too noisy for this time to be trusted to that precision"),
    "max_abs_err": ("float64", "max |variant - float64 reference| on fresh random inputs"),
    "tolerance": ("float64", "allowed max_abs_err (tolerance x max(1, max|reference|))"),
    "flops": ("float64", "arithmetic operations per call (multiply-add = 2); train: per training image, "
                         "forward + backward convolutions and matrix products (harness.train.mfu)"),
    "gflops": ("float64", "flops / time_median_s / 1e9"),
    "speedup": ("float64", "baseline variant's median time / this variant's, same size and seed"),
    "baseline": ("string", "the variant speedups are measured against"),
    "code_hash": ("string", "sha256 prefix of the variant's source: different code, not comparable"),
    "loss_final": ("float64", "learn_kernel: summed squared error after the last iteration"),
    # training rows (kind=train); kernel rows leave them empty
    "model": ("string", "train: registered model name"),
    "epochs": ("Int64", "train: epochs asked for"),
    "batch_size": ("Int64", "train: batch size (under torchrun the global batch, over all processes)"),
    "per_rank_batch": ("Int64", "train: examples per process in each step: batch_size / world_size"),
    "lr": ("float64", "train: SGD learning rate"),
    "resize": ("string", "train: input size HxW the images are resized to on the device"),
    "precision": ("string", "train: fp32 | tf32 | bf16 (autocast)"),
    "train_loss": ("float64", "train: mean cross-entropy over the last epoch's training batches"),
    "train_acc": ("float64", "train: accuracy over the last epoch's training batches (0-1)"),
    "val_loss": ("float64", "train: mean cross-entropy on the validation set after the last epoch"),
    "val_acc": ("float64", "train: validation accuracy after the last epoch (0-1)"),
    "best_val_acc": ("float64", "train: best validation accuracy over epochs (0-1)"),
    "images_per_s": ("float64", "train: median over epochs of training images per second (evaluation excluded); "
                                "under torchrun the global rate, all processes together"),
    "epoch_time_s": ("float64", "train: median over epochs of seconds per epoch, evaluation included"),
    "train_time_s": ("float64", "train: sum of epoch times"),
    "time_to_target_s": ("float64", "train: cumulative epoch seconds until val_acc >= target_accuracy"),
    "compile_s": ("float64", "train: seconds of the first compiled step (torch.compile), outside every other number"),
    "peak_mem_bytes": ("Int64", "train: peak memory: torch.cuda.max_memory_allocated on CUDA, peak RSS on CPU"),
    "peak_mem_reserved_bytes": ("Int64", "train: torch.cuda.max_memory_reserved (CUDA only)"),
    "peak_rss_bytes": ("Int64", "train: peak resident memory of the process while training"),
    "gpu_mem_used_peak_bytes": ("Int64", "train: peak GPU memory in use, sampled through NVML"),
    "gpu_util_mean_pct": ("float64", "train: mean GPU utilisation, sampled through NVML"),
    "gpu_power_mean_w": ("float64", "train: mean GPU power in watts, sampled through NVML"),
    "achieved_tflops": ("float64", "train: flops x images_per_s / 1e12 (under torchrun per device: images_per_s / "
                                   "world_size)"),
    "mfu": ("float64", "train: achieved_tflops / the GPU's dense peak for the precision (empty: unknown GPU or CPU); "
                       "per device"),
    "params": ("Int64", "train: number of model parameters"),
    "fingerprint": ("string", "train: hash of the final weights and the per-epoch loss/accuracy trace"),
    "epoch_fingerprints": ("string", "train: JSON list, the fingerprint after each epoch (the last is `fingerprint`; "
                                     "null: an epoch before a resume from an older checkpoint)"),
    "dataset_digest": ("string", "train: sha256 prefix of the decoded training and validation tensors"),
    "learned_kernel": ("string", "learn_kernel: learned weights as JSON"),
    "git_commit": ("string", "commit of the harness checkout (None outside git)"),
    "git_dirty": ("boolean", "uncommitted changes in the checkout"),
    "started_at": ("string", "UTC ISO-8601 time the row's work started"),
    "wall_s": ("float64", "seconds the row took, checks and timing included"),
    "mlflow_run_id": ("string", "MLflow child run id (empty without tracking)"),
}

# Columns added to schema 1 later, read as empty from files written before them.
ADDED_IN_V1 = ("achieved_tflops", "mfu", "noisy", "shard", "world_size", "backend", "per_rank_batch",
               "epoch_fingerprints")


# The per-epoch training series (MLflow metrics with step = epoch, and steps.csv): the same keys for
# every model, so that MLflow's compare view lines the models up metric by metric.
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "epoch_time_s")
# Columns logged as run-level MLflow metrics when a row is done (harness report --from-mlflow reads
# them back).
RUN_METRICS = ("time_median_s", "time_iqr_s", "n_measurements", "gflops", "speedup", "max_abs_err", "loss_final",
               "wall_s", *EPOCH_METRICS, "best_val_acc", "train_time_s", "time_to_target_s", "compile_s",
               "peak_mem_bytes", "peak_mem_reserved_bytes", "peak_rss_bytes", "gpu_mem_used_peak_bytes",
               "gpu_util_mean_pct", "gpu_power_mean_w", "params", "flops", "achieved_tflops", "mfu")


def metric_name(column: str, kind: str) -> str:
    """The run-level MLflow metric a column is logged as: a training row's last-epoch values take a
    `final_` prefix, so they do not collide with the per-epoch series of the same name."""
    return f"final_{column}" if kind == "train" and column in EPOCH_METRICS else column


def run_metrics(row: dict) -> dict[str, float]:
    return {metric_name(k, row["kind"]): float(row[k]) for k in RUN_METRICS if row.get(k) is not None}


def to_frame(rows: list[dict]):
    """Rows -> DataFrame with exactly COLUMNS, in order, with their dtypes."""
    import pandas as pd

    unknown = {k for row in rows for k in row} - set(COLUMNS)
    if unknown:
        raise ValueError(f"results rows carry columns not in the schema: {sorted(unknown)}")
    df = pd.DataFrame([{**row, "schema_version": SCHEMA_VERSION} for row in rows], columns=list(COLUMNS))
    return df.astype({name: dtype for name, (dtype, _) in COLUMNS.items()})


def save(rows: list[dict], run_dir: Path):
    """Write results.csv and results.parquet atomically and together (both or neither: they always
    hold the same rows); returns the DataFrame written."""
    df = to_frame(rows)
    atomic_write_all({run_dir / "results.csv": lambda p: df.to_csv(p, index=False),
                      run_dir / "results.parquet": lambda p: df.to_parquet(p, index=False)})
    return df


def storable(row: dict) -> str | None:
    """Why a row cannot be written into the schema (an unknown column, a value its dtype cannot
    hold), or None when it can."""
    try:
        to_frame([row])
    except (ValueError, TypeError, OverflowError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def results_file(path: Path) -> Path:
    """The results file of a run directory (results.parquet, else results.csv), or `path` itself."""
    path = Path(path)
    if path.is_dir():
        return next((path / n for n in RESULTS_FILES if (path / n).exists()), path / RESULTS_FILES[0])
    return path


def load(path: Path | str):
    """A results file (.parquet or .csv, or a run directory holding one) as a DataFrame with exactly
    COLUMNS, in order, with their dtypes; damaged, foreign, another schema version or a value its
    column cannot hold is a UserError naming the file (and the column and row)."""
    import pandas as pd

    path = results_file(path)
    if not path.exists():
        raise UserError(f"{path}: no such results file")
    check_file(path, MAX_FILE_BYTES, "a results file")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: pyarrow, pandas and OS errors alike
        why = (str(e).splitlines() or [""])[0][:200]
        raise UserError(f"{path}: not a readable results file ({type(e).__name__}: {why}); "
                        f"it is damaged or was not written by the harness") from None
    versions = set(df["schema_version"].astype(str)) if "schema_version" in df else set()
    if len(df) == 0 and set(COLUMNS) - set(ADDED_IN_V1) <= set(df.columns):
        versions = {str(SCHEMA_VERSION)}  # a run interrupted before its first row: no rows to carry one
    if versions != {str(SCHEMA_VERSION)}:
        found = ", ".join(sorted(versions)) or "none"
        raise UserError(f"{path}: results schema_version {found}, this harness reads {SCHEMA_VERSION}; "
                        f"re-run the suite with this version, or read it with the harness that wrote it")
    foreign = [str(c) for c in df.columns if c not in COLUMNS]
    if foreign:
        raise UserError(f"{path}: not a harness results file (columns not in its schema: {names_text(foreign)})")
    for c in ADDED_IN_V1:  # columns added after files of this version were written: empty there
        if c not in df.columns:
            df[c] = None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: not a harness results file (missing columns: {names_text(missing)})")
    df = df[list(COLUMNS)].copy()
    for name, (dtype, _) in COLUMNS.items():
        df[name] = _typed(df[name], dtype, path, name, csv=path.suffix == ".csv")
    bad = pd.Series([isinstance(v, str) and not re.fullmatch(DEVICE, v) for v in df["device"]], dtype=bool)
    if bad.any():  # printed as where the row ran ("made on 5")
        _bad_value(path, "device", df["device"], bad, "a device (valid: cpu, cuda, cuda:N, mps)")
    for name, (kind, valid) in JSON_COLUMNS.items():  # text the report, plots and dashboard parse
        bad = pd.Series([isinstance(v, str) and not _json_of(v, kind, _ITEMS.get(name)) for v in df[name]],
                        dtype=bool)
        if bad.any():
            _bad_value(path, name, df[name], bad, valid)
    return df


JSON_COLUMNS = {"config": (dict, "a JSON object"), "learned_kernel": (list, "a JSON list of numbers"),
                "epoch_fingerprints": (list, "a JSON list of fingerprints")}
_ITEMS = {"learned_kernel": (int, float), "epoch_fingerprints": (str,)}  # what a JSON list column holds


def _json_of(text: str, kind: type, items: tuple | None) -> bool:
    import json

    from harness.core.jsonfile import deeper_than

    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, kind) or deeper_than(value, 34):  # a suite nests 32 levels (suite.yamlfile)
        return False
    return items is None or all(isinstance(x, items) and not isinstance(x, bool) for x in value)


def _typed(col, dtype: str, path: Path, name: str, csv: bool):
    """One column in its schema dtype; a value it cannot hold is a damaged file, named with its row."""
    import pandas as pd

    if dtype == "boolean" and csv:  # CSV holds text: booleans come back as "True"/"False"
        bad = col.notna() & ~col.isin(["True", "False"])
        if bad.any():
            _bad_value(path, name, col, bad, "True or False")
        col = col.map({"True": True, "False": False, None: None})
    if dtype == "string" and not isinstance(col.dtype, pd.StringDtype):
        bad = pd.Series([not (v is None or v is pd.NA or isinstance(v, str) or (isinstance(v, float) and v != v))
                         for v in col], dtype=bool)
        if bad.any():
            _bad_value(path, name, col, bad, "text")
    try:
        return col.astype(dtype)
    except (ValueError, TypeError, OverflowError):
        valid = {"Int64": "a whole number", "float64": "a number", "boolean": "True or False"}.get(dtype, dtype)
        bad = pd.Series([_fails(v, dtype) for v in col], dtype=bool)
        _bad_value(path, name, col, bad, valid)


def _fails(value, dtype: str) -> bool:
    import pandas as pd

    try:
        pd.Series([value], dtype=object).astype(dtype)
    except (ValueError, TypeError, OverflowError):
        return True
    return False


def _bad_value(path: Path, name: str, col, bad, valid: str):
    i = int(bad.to_numpy().nonzero()[0][0]) if bad.any() else 0
    value = col.iloc[i]
    value = repr(value.item() if hasattr(value, "item") else value)  # numpy scalars as the values they are
    value = value if len(value) <= 60 else value[:57] + "..."
    raise UserError(f"{path}: damaged results file: column {name}, row {i + 1}: {value} is not {valid}")


def names_text(names: list[str]) -> str:
    shown = ", ".join(n[:40] for n in names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def columns_markdown() -> str:
    """The documented columns, for README/report."""
    lines = ["| column | dtype | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {dtype} | {doc} |" for name, (dtype, doc) in COLUMNS.items()]
    return "\n".join(lines)
