"""Runs a validated suite: device, determinism, one task at a time with failures isolated,
progress, MLflow logging, and the run directory (see harness.run.rundir).

Each invocation writes `<out>/<suite>/<UTC time>-<short id>/` with results.csv/.parquet,
steps.csv (per-step metrics), report.md and report.html, env.json, suite.yaml (resolved), state.json, plots/ (run/plots.py),
checkpoints/, errors.log and tracking.jsonl (harness.run.journal: what `harness sync` replays).
With a shard (harness.suite.shard) only that part of the suite runs; suite.yaml still holds the
whole suite, and the shard is in every row, env.json, state.json and the parent run's tags.
A task that raises becomes a failed row; the others still run (harness.run.task). Under torchrun
(world size above 1) it ends the run on every process instead, rank 0 recording the failed row
(harness.run.rankfail).
Exit code: 0 all ok, 1 a row failed or diverged.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.core import determinism, distributed, envinfo
from harness.core.errors import UserError
from harness.core.kinds import KINDS
from harness.run import interrupt, journal, plots, report, results, rundir
from harness.run import task as task_run

DEVICES = ("auto", "cpu", "cuda")
BAD = ("failed", "diverged")


@dataclass
class RunOutcome:
    run_dir: Path
    rows: list[dict]
    exit_code: int
    tracking_failures: list[str] = field(default_factory=list)  # tracker calls that failed (the journal has them)


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


def run_suite(suite, *, device: str, out_root: Path, tracker, fail_fast: bool = False,
              argv: list[str] | None = None, resume_dir: Path | None = None, data_dir: str | None = None,
              download: bool = False, keep_checkpoints: bool = False, shard=None,
              reproduces: dict | None = None) -> RunOutcome:
    """Run every experiment of `suite`; see the module docstring.

    Whatever ends it early (a signal, a full disk, a bug), the results, steps and report of what
    finished are written, every MLflow run still open ends KILLED and the journal records the close;
    the exception then carries `run_dir` (where to `--resume`) and `rows` (how many were written).
    `shard` (harness.suite.shard.Shard): run only that part; None: the whole suite, or on `--resume`
    the shard the run recorded. `reproduces` (`reproduce`): the run this one repeats, kept in env.json
    and as the parent run's `harness.reproduces*` tags.
    """
    import torch

    t_start = time.perf_counter()
    here = distributed.world()
    env = envinfo.collect() | {"device": device, "world_size": here.size, "argv": argv or [], "load_avg_start": _load_avg(),
                               "started_at": _now()}  # device, world size, threads: what --resume checks (run/resume.py)
    if reproduces:
        env["reproduces"] = reproduces
    run, rows, steps = None, [], []
    try:
        with interrupt.deferred():  # the run directory's first files are never cut in half by a signal
            if not here.writer:  # another data-parallel process: the same tasks, nothing written, null tracker
                run = (rundir.reopen(resume_dir, suite, shard) if resume_dir is not None
                       else rundir.new(out_root, suite.name, shard))
                run.writer = False
            elif resume_dir is not None:
                run = rundir.reopen(resume_dir, suite, shard)
                _check_same_tracking(run, tracker)
                tracker = journal.Journal(tracker, run.path)
                tracker.resume(suite.name, run.parent_run_id)
            else:
                run = rundir.new(out_root, suite.name, shard)
                env["shard"] = str(run.shard)
                tracker = journal.Journal(tracker, run.path)  # tracking.jsonl: what `harness sync` replays
                run.parent_run_id = tracker.start(
                    suite.name, run.run_id, params={"suite": suite.name, "description": suite.description,
                                                    "device": device, "argv": argv or [],
                                                    "experiments": len(run.shard.select(suite.experiments)),
                                                    "overrides": list(suite.overrides)},
                    tags=_env_tags(env) | {"run_dir": str(run.path), "shard": str(run.shard)}
                    | {f"harness.reproduces{'' if k == 'run_id' else '.' + k}": v for k, v in (reproduces or {}).items()})
                run.path.mkdir(parents=True, exist_ok=True)  # the journal made it
                results.atomic_write_text(run.path / "suite.yaml", _yaml(suite.resolved()))  # the whole suite
                results.atomic_write_json(run.path / "env.json", env)
            run.tracking_uri = tracker.tracking_uri or ""
            run.save_state()
        steps.extend(run.old_steps)
        suite = replace(suite, experiments=run.shard.select(suite.experiments))  # what this run runs
        base = {"suite": suite.name, "run_id": run.run_id, "shard": str(run.shard), "device": device,
                "device_name": envinfo.device_name(device), "git_commit": env["git_commit"],
                "git_dirty": env["git_dirty"], "threads": torch.get_num_threads(), "world_size": here.size,
                "backend": here.backend}
        _run_all(suite, torch.device(device), base, tracker, rows, steps, run, fail_fast, (data_dir, download),
                 keep_checkpoints)
        if run.writer:  # before report.md: a report may show them
            plots.write(suite.resolved()["experiments"], run.with_kept(rows), steps, run.path)
        _write(run, rows, steps, env)
        bad = sum(r["status"] in BAD for r in rows)
        tracker.log_metrics(run.parent_run_id, {"rows": len(rows), "failed": bad,
                                                "wall_s": time.perf_counter() - t_start})
        tracker.log_artifacts(run.parent_run_id, [p for p in (run.path / n for n in (
            "suite.yaml", "env.json", "results.csv", "results.parquet", "steps.csv", "report.md", "report.html", "errors.log",
            "plots"))
            if p.exists()])
        tracker.end(run.parent_run_id, "FAILED" if bad else "FINISHED")
        run.finished = True
        run.save_state()
    except BaseException as e:  # a signal, a full disk or a bug: keep what ran, end open runs KILLED
        _abort(e, run, rows, steps, env, tracker)
        raise
    return RunOutcome(run.path, rows, 1 if bad else 0, getattr(tracker, "failures", []))


def _abort(e: BaseException, run, rows, steps, env, tracker) -> None:
    """Cleanup that is never skipped: results/steps/report of what finished (best effort), then every
    open MLflow run ended KILLED and the close journaled, with further signals held off meanwhile."""
    import sys

    interrupt.clear()
    if not isinstance(tracker, journal.Journal):  # nothing was started: nothing to close
        return
    write_error = None
    with interrupt.deferred(reraise=False):
        try:
            if isinstance(e, distributed.RankFailed) and e.row is not None:  # the task that stopped the run
                rows.append(e.row)
                tracker.log_metrics(e.child, results.run_metrics(e.row))
                tracker.end(e.child, "FAILED")
            if run is not None and run.path.is_dir():
                _write(run, rows, steps, env)
        except Exception as w:  # noqa: BLE001 - e.g. the disk is full: still close the runs below
            write_error = w
            if run is None or not run.path.is_dir():
                print(f"warning: could not write the results: {type(w).__name__}: {w}", file=sys.stderr)
        finally:
            tracker.close()  # never raises: what it could not end is in .close_error (MlflowTracker: .unclosed)
    if run is not None and run.path.is_dir():
        e.run_dir, e.rows = run.path, len(run.with_kept(rows))
        e.written, e.write_error, e.journal_error = _written(run, rows, steps), write_error, tracker.close_error


def _run_all(suite, device, base, tracker, rows, steps, run, fail_fast, data, keep_checkpoints) -> None:
    from rich.console import Console

    from harness.run.estimate import Plan
    from harness.run.progress import SuiteProgress, announce, row_line

    plans = [(exp, KINDS.get(exp.spec.kind).tasks(exp, device)) for exp in suite.experiments]
    console = Console(stderr=True, soft_wrap=True, quiet=not run.writer)  # one line per row, also in CI logs
    plan = Plan.build(suite.experiments, device, probe=run.writer)  # the other processes show nothing
    for i, j in ((i, j) for i, (exp, tasks) in enumerate(plans) for j, t in enumerate(tasks)
                 if rundir.task_key(exp.id, t.fields["variant"], t.fields["size"]) in run.done):
        plan.skip(i, j)  # finished before a resume
    announce(console, plan, device.type)
    with SuiteProgress(console, plan, suite.name) as progress:
        for i, (exp, tasks) in enumerate(plans):
            settings = determinism.configure(exp.spec.determinism)
            exp_rows, new_rows, children = [], [], []  # all of the experiment's rows; those run now
            for j, task in enumerate(tasks):
                key = rundir.task_key(exp.id, task.fields["variant"], task.fields["size"])
                if key in run.done:  # finished before the interruption: keep its row, run nothing
                    rows.append(run.done[key])
                    exp_rows.append(run.done[key])
                    continue
                label = exp.id if len(tasks) == 1 else f"{exp.id} {task.fields['variant']} {task.fields['size']}"
                progress.start(i, j, label)
                t0 = time.perf_counter()
                child = _child_run(tracker, run, key, exp, task, settings)
                ctx = task_run.Context(tracker, child, steps, {"experiment": exp.id, "variant": task.fields["variant"],
                                                       "size": task.fields["size"], "seed": exp.spec.seed},
                               progress, console, run.path, run.checkpoint_dir(exp.id),
                               _checkpoint(run, exp), *data, run.writer)
                row = task_run.run_task(exp, task, base, ctx)
                rows.append(row)  # at once: an interrupted run still writes what finished
                exp_rows.append(row)
                new_rows.append(row)
                logged = results.run_metrics(row)
                tracker.log_metrics(child, logged)  # and its MLflow run ends with it, not with the experiment
                tracker.end(child, "FAILED" if row["status"] in BAD else "FINISHED")
                children.append((child, logged))
                progress.task_done(time.perf_counter() - t0)
                console.print(row_line(row), highlight=False)
                interrupt.check()  # a signal whose exception Python swallowed (in a __del__) stops here
                if fail_fast and row["status"] in BAD:
                    break
            KINDS.get(exp.spec.kind).finalize(exp, exp_rows)  # speedups need the baseline row, even one kept from before
            for row, (child, logged) in zip(new_rows, children):  # what finalize added (speedups)
                added = {k: v for k, v in results.run_metrics(row).items() if logged.get(k) != v}
                if added:
                    tracker.log_metrics(child, added)
            _save_progress(run, rows, steps)  # after every experiment: a killed run keeps these rows
            if exp.spec.kind == "train" and not keep_checkpoints:
                run.drop_checkpoint(exp.id)
            if fail_fast and any(r["status"] in BAD for r in new_rows):
                console.print("[red]--fail-fast: stopping after the first failure[/red]")
                return


def _save_progress(run, rows, steps) -> None:
    if not run.writer:
        return
    results.save(rows, run.path)
    _save_steps(run.path, steps)


def _save_steps(run_dir: Path, steps: list[dict]) -> None:
    if steps:
        import pandas as pd

        results.atomic_write(run_dir / "steps.csv", lambda p: pd.DataFrame(steps).to_csv(p, index=False))


def _check_same_tracking(run, tracker) -> None:
    rundir.check_tracking_mode(run.path, run.parent_run_id, bool(tracker.tracking_uri))
    offline = journal.is_offline(run.parent_run_id) or not run.parent_run_id
    if not offline and not tracker.knows_run(run.parent_run_id):
        where = f" ({run.tracking_uri})" if run.tracking_uri else ""
        raise UserError(f"--resume {run.path}: its MLflow run {run.parent_run_id} is not in the store "
                        f"{rundir.redact(tracker.tracking_uri)}; it was tracked in another store{where}: resume "
                        f"with --tracking-uri that store (or the same --out), or start a new run")


def _child_run(tracker, run, key, exp, task, settings) -> str:
    if key in run.children:
        return tracker.resume_child(run.children[key])
    child = tracker.start_child(key, params=exp.spec.model_dump(mode="json") | task.params,
                                tags={"experiment": exp.id, "kind": exp.spec.kind, "family": task.fields["family"],
                                      "variant": task.fields["variant"], "size": task.fields["size"],
                                      "spec_hash": exp.spec_hash, "code_hash": task.fields.get("code_hash") or "",
                                      **_prefixed(settings)})
    run.children[key] = child
    run.save_state()
    return child


def _checkpoint(run, exp):
    if not run.resumed or exp.spec.kind != "train":
        return None
    from harness.train import checkpoint

    state = checkpoint.load(run.checkpoint_dir(exp.id))
    if state is not None and state["spec_hash"] != exp.spec_hash:
        raise UserError(f"--resume: checkpoint of {exp.id} was written for another spec; start a new run")
    return state


def _load_avg() -> list[float] | None:
    """1, 5 and 15 minute load averages: how busy the machine was (None where unknown)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


WRITTEN = ("results", "steps", "report")  # what _write writes, in order


def _write(run, rows, steps, env) -> None:
    """results, steps.csv, report.md and report.html, and the load average and time at the end into
    env.json (a resumed run keeps its first start: the report's wall time spans the interruption).
    Each of WRITTEN, once on disk (atomically), is noted in `run.on_disk` with what it holds."""
    if not run.writer:
        return
    saved = run.path / "env.json"
    env = (json.loads(saved.read_text()) if saved.is_file() else env) | {"load_avg_end": _load_avg(),
                                                                         "finished_at": _now()}
    results.atomic_write_json(saved, env)
    held = (len(run.with_kept(rows)), len(steps))
    df = results.save(run.with_kept(rows), run.path)
    run.on_disk["results"] = held
    _save_steps(run.path, steps)
    run.on_disk["steps"] = held
    report.write_reports(run.path, df, env, steps)  # last: it embeds the plots written before it
    run.on_disk["report"] = held


def _written(run, rows, steps) -> tuple[str, ...]:
    """Which of WRITTEN are on disk with every finished row and step (an earlier write may hold them)."""
    held = (len(run.with_kept(rows)), len(steps))
    return tuple(w for w in WRITTEN if run.on_disk.get(w) == held)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _env_tags(env: dict) -> dict:
    keys = ("git_commit", "git_dirty", "torch", "cuda", "cudnn", "gpu_name", "gpu_driver", "host",
            "cpu_model", "python", "harness_version", "device")
    return {k: env.get(k) for k in keys}


def _prefixed(settings: dict) -> dict:
    return {f"determinism.{k}" if k != "determinism" else k: v for k, v in settings.items()}


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)
