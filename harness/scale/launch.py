"""`python -m harness launch SUITE --launcher local|slurm|ray --shards N`: a suite as N shards.

Each shard runs `python -m harness run SUITE --shard i/N --no-tracking --out <launch>/shards/<i>`
through a launcher (harness.scale.launchers), its output in `<launch>/logs/shard-<i>.log`. The
launch directory `<out>/<suite>/<UTC time>-launch-<id>/` holds launch.json (the suite, the shards,
the launcher, each shard's handle, run directory, log and state, the launch's status) and, once
the shards have ended, the merged results, steps and report.md (harness.scale.merge). The shards
are then synced into MLflow by this process alone (one writer; each shard is a parent run tagged
`shard` and `launch`), unless --no-tracking.

Whether a shard finished is read from its run directory (state.json `finished`), not from the
launcher, so `launch --resume LAUNCH_DIR` works after this process died: finished shards are kept;
a shard still running (its handle alive) is watched again; an interrupted one is continued with
`run --resume` of its run directory (finished experiments kept, an interrupted training restarts
from its checkpoint); one that never made a run directory is started again.

Ctrl-C / SIGTERM cancel the shards (SIGTERM: each writes what finished) and print the `--resume`
command. Exit 0 when every shard finished with no failed row; 1 otherwise, naming each shard that
did not finish with the tail of its log.
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from harness.core.errors import UserError
from harness.run import interrupt, journal, results
from harness.scale import merge as merging
from harness.scale.launchers.base import ENDED, ShardJob, get_launcher
from harness.scale.progress import Display, rows_done
from harness.suite.shard import Shard

FILE = "launch.json"
POLL_S = 1.0
CANCEL_WAIT_S = 60.0
# the settings of a launch recorded in launch.json, which `launch --resume` reuses (so refuses)
FIXED = {k: f"--{k.replace('_', '-')}" for k in ("device", "seed", "max_experiments", "data_dir", "download",
                                                "fail_fast", "keep_checkpoints", "no_tracking", "gpus_per_shard",
                                                "partition", "time_min")} | {"select": "-k", "overrides": "--set"}


def from_cli(args) -> int:
    """`launch`'s arguments -> start or resume."""
    if args.resume is not None:
        given = [flag for flag, value in (("SUITE", args.suite), ("--shards", args.shards),
                                          ("--launcher", args.launcher), ("--out", args.out != Path("results")))
                 if value] + [flag for k, flag in FIXED.items() if getattr(args, k) not in (None, False)]
        if given:
            raise UserError(f"launch --resume {args.resume}: takes the launch's own settings from its {FILE}; "
                            f"give no {', '.join(given)}")
        return resume(args.resume, args.tracking_uri)
    if args.suite is None:
        raise UserError("launch: give a SUITE (e.g. suites/smoke.yaml), or --resume LAUNCH_DIR")
    for flag, value, least in (("--shards", args.shards, 1), ("--gpus-per-shard", args.gpus_per_shard, 0),
                               ("--time-min", args.time_min, 1)):
        if value is not None and value < least:
            raise UserError(f"{flag} {value}: must be at least {least}")
    if args.shards is None:
        raise UserError("launch: give --shards N (how many parts the suite runs as)")
    run_args = [x for flag, value in (("--device", args.device), ("--seed", args.seed), ("-k", args.select),
                                      ("--max-experiments", args.max_experiments), ("--data-dir", args.data_dir))
                if value is not None for x in (flag, str(value))]
    run_args += [flag for flag, on in (("--download", args.download), ("--fail-fast", args.fail_fast),
                                       ("--keep-checkpoints", args.keep_checkpoints)) if on]
    run_args += [x for text in args.overrides or [] for x in ("--set", text)]
    selection = {"seed": args.seed, "select": args.select, "max_experiments": args.max_experiments,
                 "overrides": args.overrides}
    options = {"gpus": args.gpus_per_shard or 0, "partition": args.partition, "time_min": args.time_min}
    return start(args.suite, args.launcher or "local", args.shards, args.out, run_args, selection, options,
                 tracking=not args.no_tracking, tracking_uri=args.tracking_uri)


def start(suite_path: Path, launcher_name: str, shards: int, out: Path, run_args: list[str], selection: dict,
          options: dict, tracking: bool, tracking_uri: str | None) -> int:
    from harness.run import rundir
    from harness.suite import load_suite

    suite = load_suite(suite_path, **selection)  # every input check before anything is submitted
    if shards > len(suite.experiments):
        raise UserError(f"--shards {shards}: {suite.path} has {len(suite.experiments)} experiments after "
                        f"selection; give at most {len(suite.experiments)} shards")
    rundir.check_out_root(out)
    launcher = get_launcher(launcher_name)
    launcher.check(ShardJob(0, shards, [], Path.cwd(), Path(os.devnull), {}, **options))  # e.g. sbatch --test-only
    uri = _open_store(out, tracking_uri) if tracking else None
    from harness.run.rundir import redact
    stamp = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-launch-{secrets.token_hex(3)}"
    launch_dir = (out / suite.name / stamp).absolute()
    launch_dir.mkdir(parents=True)
    import yaml

    results.atomic_write_text(launch_dir / "suite.yaml", yaml.safe_dump(suite.resolved(), sort_keys=False))
    state = {"suite": suite.name, "suite_path": str(Path(suite_path).absolute()), "cwd": str(Path.cwd()),
             "shards": shards, "launcher": launcher_name, "options": options, "run_args": run_args,
             "selection": selection, "out": str(out.absolute()), "tracking": tracking,
             "tracking_uri": redact(uri) if uri else None,
             "status": "running", "jobs": [{"index": i, "handle": None, "state": "pending", "submissions": 0,
                                           "out": str(launch_dir / "shards" / str(i)),
                                           "log": str(launch_dir / "logs" / f"shard-{i}.log")} for i in range(shards)]}
    print(f"launch {launch_dir}: {suite.name}, {len(suite.experiments)} experiments as {shards} shards "
          f"({launcher_name})", file=sys.stderr)
    return _run(launch_dir, state, launcher, suite, list(range(shards)), uri)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Selection(_Closed):  # load_suite's keywords: nothing else may reach it
    seed: StrictInt | None = None
    select: StrictStr | None = None
    max_experiments: StrictInt | None = None
    overrides: list[StrictStr] | None = None


class _Job(BaseModel):
    model_config = ConfigDict(extra="allow")  # the launcher's own fields (run_dir, exit_code, ...)
    index: Annotated[StrictInt, Field(ge=0)]
    state: StrictStr
    out: StrictStr
    log: StrictStr
    submissions: StrictInt = 0


class _LaunchState(BaseModel):
    model_config = ConfigDict(extra="allow")
    suite_path: StrictStr
    cwd: StrictStr
    shards: Annotated[StrictInt, Field(ge=1)]
    launcher: StrictStr
    options: dict[StrictStr, StrictInt | StrictStr | None]
    run_args: list[StrictStr]
    selection: _Selection
    out: StrictStr
    tracking: StrictBool
    tracking_uri: StrictStr | None = None
    jobs: list[_Job]


def read_launch_state(launch_dir: Path) -> dict:
    """launch.json, validated (harness.core.jsonfile's limits; the fields `launch --resume` uses, typed):
    every problem a UserError naming the file."""
    from harness.core import jsonfile

    file = launch_dir / FILE
    where = "; give the directory `launch` printed, <out>/<suite>/<UTC time>-launch-<id>"
    if not file.is_file():
        raise UserError(f"launch --resume {launch_dir}: not a launch directory (no {FILE}){where}")
    jsonfile.check_file(file, 64 << 20, f"a {FILE}")
    state = jsonfile.read_json(file, what=f"a {FILE}", max_bytes=64 << 20, max_depth=16, hint=where)
    try:
        _LaunchState.model_validate(state)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors(include_url=False)]
        raise UserError(f"{file}: not a {FILE} `launch` wrote: {'; '.join(problems[:3])}{where}") from None
    return state


def resume(launch_dir: Path, tracking_uri: str | None = None) -> int:
    """Continue a launch: only the shards that did not finish are submitted again (`tracking_uri`:
    the store to sync into, when the recorded one had its password redacted)."""
    from harness.suite import load_suite

    from harness.run.runfiles import read_suite

    launch_dir = Path(launch_dir).absolute()
    state = read_launch_state(launch_dir)
    suite_path, jobs = Path(state["suite_path"]), state["jobs"]
    suite = load_suite(suite_path, **state["selection"])
    before = read_suite(launch_dir / "suite.yaml")
    if before.get("experiments") != suite.resolved()["experiments"]:
        raise UserError(f"launch --resume {launch_dir}: {suite_path} changed since the launch (its resolved "
                        f"experiments differ from {launch_dir / 'suite.yaml'}); start a new launch")
    uri = tracking_uri or state.get("tracking_uri")
    if state.get("tracking") and "***" in (uri or ""):
        raise UserError(f"launch --resume {launch_dir}: its store {uri} had a password; give it with --tracking-uri")
    uri = _open_store(Path(state["out"]), uri) if state.get("tracking") else None
    launcher = get_launcher(state["launcher"])
    todo = []
    for job in jobs:
        run_dir = _run_dir(job, suite.name)
        if run_dir is not None and merging.read_shard(run_dir).finished:
            job["state"] = "finished"
        elif job.get("handle") and launcher.state(job["handle"]) in ("pending", "running"):
            job["state"] = "running"  # still going (the launching process died, the shard did not): watch it
        else:
            _close_if_dead(job, suite.name)  # gone while no launcher watched it
            todo.append(job["index"])
    from harness.run import resume as resumed

    threads = None  # local shards inherit this process's environment: the threads they will get
    if state["launcher"] == "local":
        from harness.scale.launchers.local import shard_threads

        threads = shard_threads(state["shards"])
    for i in todo:  # what each unfinished shard was made under, before anything is submitted
        if (run_dir := _run_dir(jobs[i], suite.name)) is not None:
            resumed.check_shard(run_dir, i, launch_dir, threads=threads)
    kept = len(jobs) - len(todo)
    print(f"launch --resume {launch_dir}: resubmitting {len(todo)} shard(s) "
          f"({', '.join(str(i) for i in todo) or 'none'}); {kept} finished or still running", file=sys.stderr)
    state["status"] = "running"
    return _run(launch_dir, state, launcher, suite, todo, uri)


def _run(launch_dir: Path, state: dict, launcher, suite, todo: list[int], uri: str | None) -> int:
    """Submit the shards in `todo`, watch all, then merge and sync."""
    from harness.core.kinds import KINDS

    count, jobs = state["shards"], state["jobs"]
    totals = [sum(KINDS.get(e.spec.kind).describe(e.spec)[0] for e in Shard(i, count).select(
        suite.experiments)) for i in range(count)]
    try:
        for i in todo:
            job = jobs[i]
            run_dir = _run_dir(job, suite.name)
            argv = [sys.executable, "-m", "harness", "run", state["suite_path"], "--shard", f"{i}/{count}",
                    "--no-tracking", "--out", job["out"], *state["run_args"]]
            if run_dir is not None:  # interrupted mid-way: continue it, finished experiments kept
                argv += ["--resume", str(run_dir)]
            job["handle"] = launcher.submit(ShardJob(i, count, argv, Path(state["cwd"]), Path(job["log"]),
                                                     {}, **state["options"]))
            job["state"], job["submissions"] = "pending", job.get("submissions", 0) + 1
            _save(launch_dir, state)
        _watch(launch_dir, state, launcher, suite.name, totals)
    except KeyboardInterrupt as e:
        _cancel(launch_dir, state, launcher)
        print(f"interrupted: the shards were cancelled (each keeps what finished). Continue with:\n"
              f"  python -m harness launch --resume {shlex.quote(str(launch_dir))}", file=sys.stderr)
        raise interrupt.as_interrupted(e)
    finally:
        launcher.close()
    try:
        return _finish(launch_dir, state, suite.name, uri)
    except KeyboardInterrupt as e:  # the shards have ended: only the merge or the sync was cut short
        with interrupt.deferred(reraise=False):
            state["status"] = "interrupted"
            _save(launch_dir, state)
        synced = "; MLflow runs the sync had opened ended KILLED" if uri else ""
        print(f"interrupted while merging{' and syncing' if uri else ''} the shards (every shard had ended{synced}). "
              f"Finish with:\n"
              f"  python -m harness launch --resume {shlex.quote(str(launch_dir))}", file=sys.stderr)
        raise interrupt.as_interrupted(e)


def _watch(launch_dir: Path, state: dict, launcher, suite_name: str, totals: list[int]) -> None:
    display = Display(f"{suite_name}: {state['shards']} shards ({state['launcher']}) -> {launch_dir}")
    try:
        while True:
            lines = []
            for job in state["jobs"]:
                if job["state"] != "finished":
                    before = job["state"]
                    job["state"] = launcher.state(job["handle"]) if job.get("handle") else "unknown"
                    job["exit_code"] = getattr(launcher, "exit_code", lambda h: None)(job["handle"])
                    if job["state"] in ENDED and before not in ENDED:
                        _close_if_dead(job, suite_name)
                lines.append((f"{job['index']}/{state['shards']}", job["state"],
                              rows_done(_run_dir(job, suite_name)), totals[job["index"]],
                              str(Path(job["log"]).relative_to(launch_dir))))
            display.update(lines)
            _save(launch_dir, state)
            if all(job["state"] in (*ENDED, "finished") for job in state["jobs"]):
                return
            time.sleep(POLL_S)
    finally:
        display.close()


def _close_if_dead(job: dict, suite_name: str) -> None:
    """A shard whose process is gone without finishing (killed outright: no `close` in its journal):
    its open runs are closed in its journal for it, so the sync ends them KILLED, not RUNNING."""
    run_dir = _run_dir(job, suite_name)
    try:
        if run_dir is None or merging.read_shard(run_dir).finished:
            return
    except UserError:  # damaged: the merge names it
        return
    journal.close_dead(run_dir)


def _cancel(launch_dir: Path, state: dict, launcher) -> None:
    """Cancel every shard still going and wait (signals held off) for them to write what finished."""
    with interrupt.deferred(reraise=False):
        going = [j for j in state["jobs"] if j.get("handle") and j["state"] not in ("finished", *ENDED)]
        for job in going:
            launcher.cancel(job["handle"])
        deadline = time.monotonic() + CANCEL_WAIT_S
        while going and time.monotonic() < deadline:
            going = [j for j in going if launcher.state(j["handle"]) not in ENDED]
            time.sleep(0.2)
        for job in state["jobs"]:
            if job["state"] not in ("finished",) and job.get("handle"):
                job["state"] = launcher.state(job["handle"])
        state["status"] = "interrupted"
        _save(launch_dir, state)


def _finish(launch_dir: Path, state: dict, suite_name: str, uri: str | None) -> int:
    """Decide each shard from its run directory, merge into the launch directory, sync, report."""
    run_dirs, unfinished = [], []
    for job in state["jobs"]:
        run_dir = _run_dir(job, suite_name)
        job["run_dir"] = str(run_dir) if run_dir else None
        if run_dir is not None:
            run_dirs.append(run_dir)
        if run_dir is None or not merging.read_shard(run_dir).finished:
            unfinished.append(job)
        else:
            job["state"] = "finished"
    outcome = merging.merge(run_dirs, launch_dir, count=state["shards"]) if run_dirs else None
    synced = _sync(launch_dir, state, run_dirs, uri) if uri and run_dirs else True
    if outcome is not None and synced and uri:
        outcome = merging.merge(run_dirs, launch_dir, count=state["shards"])  # with the MLflow run ids sync filled
    for job in unfinished:
        print(f"error: shard {job['index']}/{state['shards']} did not finish ({job['state']}"
              + (f", exit status {job['exit_code']}" if job.get("exit_code") is not None else "")
              + f"); its log {job['log']} ends:\n{_tail(Path(job['log']))}", file=sys.stderr)
    failed_rows = outcome.failed_rows if outcome else 0
    state["status"] = "failed" if unfinished or failed_rows or not synced else "done"
    _save(launch_dir, state)
    if outcome is not None:
        print(f"{outcome.rows} rows from {len(run_dirs)} of {state['shards']} shards, {failed_rows} failed or "
              f"diverged -> {launch_dir}\nreport: {launch_dir / 'report.md'}\n        {launch_dir / 'report.html'}")
    if unfinished:
        print(f"continue with: python -m harness launch --resume {shlex.quote(str(launch_dir))}", file=sys.stderr)
    return 1 if state["status"] == "failed" else 0


def _sync(launch_dir: Path, state: dict, run_dirs: list[Path], uri: str) -> bool:
    """Every shard's run directory into MLflow, from this process alone; False (said why) if the store fails."""
    from harness.track.sync import check_run_dir, sync_run_dir
    from harness.track.tracking import MlflowTracker

    out = Path(state["out"])
    try:
        for run_dir in run_dirs:
            tracker = MlflowTracker(uri, out / "mlartifacts")
            o = sync_run_dir(run_dir, tracker, check_run_dir(run_dir))
            tracker.log_params(o.parent_run_id, params={}, tags={"launch": launch_dir.name})
            print(f"synced {run_dir.relative_to(launch_dir)} -> MLflow run {o.parent_run_id}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - the results are complete; the journals are synced later
        print(f"warning: syncing into MLflow ({state['tracking_uri']}) failed: {type(e).__name__}: {e}; the results are complete, "
              f"and `python -m harness sync {launch_dir / 'shards'} --tracking-uri URI` logs them", file=sys.stderr)
        return False
    print(f"MLflow: {state['tracking_uri']} (experiment {state['suite']!r})")
    return True


def _open_store(out: Path, tracking_uri: str | None) -> str:
    """The store the shards are synced into, checked now (exit 2 before anything is submitted)."""
    from harness.track.store import open_store
    from harness.track.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri(out)
    open_store(uri)
    return uri


def _run_dir(job: dict, suite_name: str) -> Path | None:
    """The shard's run directory (the newest one with a state.json under its --out), or None."""
    found = sorted(p.parent for p in (Path(job["out"]) / suite_name).glob("*/state.json"))
    return found[-1] if found else None


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError as e:
        return f"    (unreadable: {e})"
    return "\n".join(f"    {line}" for line in text) or "    (empty)"


def _save(launch_dir: Path, state: dict) -> None:
    results.atomic_write_json(launch_dir / FILE, state)
