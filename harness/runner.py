"""Runs a validated suite: device, determinism, one task at a time with failures isolated,
progress, MLflow logging, and the run directory.

Each invocation writes `<out>/<suite>/<UTC time>-<short id>/` with results.csv/.parquet,
steps.csv (per-step metrics), report.md, env.json, suite.yaml (resolved) and errors.log.
A task that raises becomes a failed row; the others still run. Exit code: 0 all ok, 1 a failure.
"""
from __future__ import annotations

import datetime as dt
import secrets
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness import determinism, envinfo, report, results
from harness.errors import UserError
from harness.kernels.bench import FINALIZE, TASKS

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunOutcome:
    run_dir: Path
    rows: list[dict]
    exit_code: int


def resolve_device(name: str) -> str:
    """'auto' -> cuda when a CUDA device is present, else cpu; 'cuda' without one is an input error."""
    import torch

    if name not in DEVICES:
        raise UserError(f"--device {name}: unknown device (valid: {', '.join(DEVICES)})")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device cuda: no CUDA device is available (torch {torch.__version__}, "
                        f"built for CUDA {torch.version.cuda}); use --device cpu or --device auto")
    return name


def make_tracker(tracking: bool, tracking_uri: str | None, out_root: Path):
    if not tracking:
        from harness.tracking_null import NullTracker

        return NullTracker()
    from harness.tracking import MlflowTracker, default_tracking_uri

    return MlflowTracker(tracking_uri or default_tracking_uri(out_root), out_root / "mlartifacts")


def run_suite(suite, *, device: str, out_root: Path, tracker, fail_fast: bool = False,
              argv: list[str] | None = None) -> RunOutcome:
    import torch

    t_start = time.perf_counter()
    env = envinfo.collect()
    started = dt.datetime.now(dt.timezone.utc)
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    run_dir = Path(out_root) / suite.name / run_id
    tracker.start(suite.name, run_id, params={"suite": suite.name, "device": device, "argv": argv or [],
                                              "experiments": len(suite.experiments)},
                  tags=_env_tags(env, device) | {"run_dir": str(run_dir)})
    run_dir.mkdir(parents=True)
    results.atomic_write_text(run_dir / "suite.yaml", _yaml(suite.resolved()))
    results.atomic_write_json(run_dir / "env.json", env | {"device": device, "argv": argv or []})

    base = {"suite": suite.name, "run_id": run_id, "device": device,
            "device_name": envinfo.device_name(device), "git_commit": env["git_commit"],
            "git_dirty": env["git_dirty"], "threads": torch.get_num_threads()}
    rows: list[dict] = []
    steps: list[dict] = []
    try:
        _run_all(suite, torch.device(device), base, tracker, rows, steps, run_dir, fail_fast)
    except BaseException:  # Ctrl-C or a bug: keep what ran, end open MLflow runs as KILLED
        _write(run_dir, rows, steps, env, suite)
        tracker.close()
        raise
    _write(run_dir, rows, steps, env, suite)
    failed = any(r["status"] == "failed" for r in rows)
    tracker.log_metrics(tracker.parent_run_id, {"rows": len(rows), "failed": sum(r["status"] == "failed" for r in rows),
                                                "wall_s": time.perf_counter() - t_start})
    tracker.log_artifacts(tracker.parent_run_id, [p for p in (run_dir / n for n in (
        "suite.yaml", "env.json", "results.csv", "results.parquet", "steps.csv", "report.md", "errors.log")) if p.exists()])
    tracker.end(tracker.parent_run_id, "FAILED" if failed else "FINISHED")
    return RunOutcome(run_dir, rows, 1 if failed else 0)


def _run_all(suite, device, base, tracker, rows, steps, run_dir, fail_fast) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    plans = [(exp, TASKS[exp.spec.kind](exp, device)) for exp in suite.experiments]
    console = Console(stderr=True, soft_wrap=True)  # one line per row, also in CI logs
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(suite.name, total=sum(len(tasks) for _, tasks in plans))
        for exp, tasks in plans:
            settings = determinism.configure(exp.spec.determinism)
            exp_rows, children = [], []
            for task in tasks:
                progress.update(bar, description=f"{exp.id} {task.fields['variant']} {task.fields['size']}")
                row, child = _run_task(exp, task, base, settings, tracker, steps, run_dir)
                rows.append(row)  # at once: an interrupted run still writes what finished
                exp_rows.append(row)
                children.append(child)
                progress.advance(bar)
                console.print(_line(row))
                if fail_fast and row["status"] == "failed":
                    break
            FINALIZE.get(exp.spec.kind, lambda _: None)(exp_rows)
            for row, child in zip(exp_rows, children):
                tracker.log_metrics(child, _metrics(row))
                tracker.end(child, "FAILED" if row["status"] == "failed" else "FINISHED")
            if fail_fast and any(r["status"] == "failed" for r in exp_rows):
                console.print("[red]--fail-fast: stopping after the first failure[/red]")
                return


def _run_task(exp, task, base, settings, tracker, steps, run_dir) -> tuple[dict, str]:
    spec = exp.spec
    row = base | task.fields | {"experiment": exp.id, "kind": spec.kind, "seed": spec.seed,
                                "determinism": spec.determinism,
                                "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    child = tracker.start_child(f"{exp.id}/{task.fields['variant']}/{task.fields['size']}",
                                params=spec.model_dump(mode="json") | task.params,
                                tags={"experiment": exp.id, "kind": spec.kind, "family": row["family"],
                                      "variant": row["variant"], "size": row["size"], "spec_hash": exp.spec_hash,
                                      "code_hash": row.get("code_hash") or "", **_prefixed(settings)})
    row["mlflow_run_id"] = child

    def log(metrics: dict, step: int) -> None:
        tracker.log_metrics(child, metrics, step=step)
        steps.extend({"experiment": exp.id, "variant": row["variant"], "size": row["size"], "seed": spec.seed,
                      "step": step, "metric": k, "value": v} for k, v in metrics.items())

    determinism.seed_everything(spec.seed)
    t0 = time.perf_counter()
    try:
        row |= task.run(log)
    except Exception as e:  # isolation: a failing task is a failed row, the suite goes on
        row |= {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        with open(run_dir / "errors.log", "a", encoding="utf-8") as f:
            f.write(f"--- {exp.id} {row['variant']} {row['size']}\n{traceback.format_exc()}\n")
    row["wall_s"] = time.perf_counter() - t0
    return row, child


METRIC_COLUMNS = ("time_median_s", "time_iqr_s", "n_measurements", "gflops", "speedup", "max_abs_err",
                  "loss_final", "wall_s")


def _metrics(row: dict) -> dict:
    return {k: float(row[k]) for k in METRIC_COLUMNS if row.get(k) is not None}


def _write(run_dir: Path, rows, steps, env, suite):
    df = results.save(rows, run_dir)
    if steps:
        import pandas as pd

        results.atomic_write(run_dir / "steps.csv", lambda p: pd.DataFrame(steps).to_csv(p, index=False))
    results.atomic_write_text(run_dir / "report.md", report.run_report(df, env, steps))
    return df


def _line(row: dict) -> str:
    head = f"{row['experiment']:<22} {row['variant']:<11} {row['size']:<30}"
    if row["status"] == "ok" and row.get("time_median_s") is not None:
        return f"[green]ok[/green]     {head} {report.fmt_time(row['time_median_s'])}"
    if row["status"] == "ok":
        return f"[green]ok[/green]     {head}"
    colour = "yellow" if row["status"] == "capped" else "red"
    return f"[{colour}]{row['status']:<6}[/{colour}] {head} {row.get('error', '')}"


def _env_tags(env: dict, device: str) -> dict:
    keys = ("git_commit", "git_dirty", "torch", "cuda", "cudnn", "gpu_name", "gpu_driver", "host",
            "cpu_model", "python", "harness_version")
    return {k: env.get(k) for k in keys} | {"device": device}


def _prefixed(settings: dict) -> dict:
    return {f"determinism.{k}" if k != "determinism" else k: v for k, v in settings.items()}


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)
