"""run, list, summary, env: running a suite on this machine (or this process's part of it)."""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from harness.core.errors import UserError


def add(sub) -> None:
    run = sub.add_parser("run", help="run a suite, log it to MLflow, write results and a report")
    run.add_argument("suite", type=Path, help=SUITE_HELP)
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                     help="auto (default) picks CUDA when present")
    run.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                     help="results root (default: results/); each run writes DIR/<suite>/<UTC time>-<id>/")
    run.add_argument("--tracking-uri", metavar="URI",
                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///DIR/mlflow.db)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow (results are still written)")
    add_selection(run, shard=True)
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed experiment")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue an interrupted run: finished experiments are kept, an interrupted "
                          "training restarts from its last checkpoint, MLflow runs are continued")
    run.add_argument("--data-dir", metavar="DIR",
                     help="directory holding FashionMNIST/raw/ (default: $HARNESS_DATA_DIR, else ~/.cache/harness/data)")
    run.add_argument("--download", action="store_true", help="download Fashion-MNIST if missing (needs internet)")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep each finished training's last checkpoint (default: removed once the experiment is done)")

    lst = sub.add_parser("list", help="show what a suite would run, after matrix expansion, and how long it would take")
    lst.add_argument("suite", type=Path, help=SUITE_HELP)
    lst.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                     help="the device to estimate the duration on (a probe of a few seconds; default auto)")
    lst.add_argument("--no-estimate", action="store_true", help="do not estimate the duration (no probe)")
    add_selection(lst, shard=True)

    summ = sub.add_parser("summary", help="a model's layers: output shapes, parameters, FLOPs")
    summ.add_argument("model", help="registered model name, e.g. lenet, vgg, resnet18, resnext")
    summ.add_argument("--input", default="1,1,28,28", metavar="N,C,H,W", help="input shape (default 1,1,28,28)")

    env = sub.add_parser("env", help="what this machine is: python, torch, CUDA, cuDNN, GPU, git")
    env.add_argument("--json", action="store_true", help="print JSON")


class _Once(argparse.Action):
    """-k given once: a second -k would silently replace the first (argparse keeps the last)."""

    def __call__(self, parser, namespace, values, option_string=None):
        first = getattr(namespace, self.dest, None)
        if first is not None:
            parser.error(f"argument {option_string}: given twice ({first!r}, then {values!r}); give one expression, "
                         f"e.g. {option_string} {shlex.quote(f'{first} or {values}')}")
        setattr(namespace, self.dest, values)


def integer(text: str) -> int:
    """An argparse type: an integer in ASCII digits. int() alone also takes '１２' (full-width), '1_000'
    and other scripts' digits."""
    import re

    if not re.fullmatch(r"\s*[-+]?[0-9]+\s*", text, re.ASCII):
        raise argparse.ArgumentTypeError(f"invalid integer value: {text!r} (an integer in ASCII digits 0-9)")
    return int(text)


SUITE_HELP = "suite YAML file (e.g. suites/kernels.yaml), or the name of one in suites/ (e.g. smoke)"


def add_selection(p: argparse.ArgumentParser, shard: bool = False) -> None:
    if shard:
        p.add_argument("--shard", metavar="I/N", help="only shard I of N: the j-th experiment goes to shard j %% N; "
                                                      "auto: I and N from a Slurm job array")
    p.add_argument("--seed", type=integer, help="override every experiment's seed (replaces a seed matrix axis; "
                                            "the same as --set seed=N, and not given with any --set of seed)")
    p.add_argument("--set", dest="overrides", action="append", metavar="[NAME.]KEY=VALUE",
                   help="change a field, validated as in the suite file (repeatable): KEY=VALUE for every "
                        "experiment whose kind has KEY, over its own value and the defaults (a matrix axis KEY "
                        "is replaced); NAME.KEY=VALUE for experiment NAME only, winning over KEY=VALUE. VALUE "
                        "is YAML: --set epochs=1 --set lenet.lr=0.05 --set resize=[32,32]; no nested keys (set "
                        "model_args={arch: ...} whole). Recorded as `overrides` in the run's suite.yaml")
    p.add_argument("-k", dest="select", metavar="EXPRESSION", action=_Once,
                   help="only some experiments, by name, in pytest's -k grammar: terms joined by or, and, not and "
                        "parentheses (-k 'lenet or res*', -k 'res* and not resnext'). A term selects the experiment "
                        "named so if there is one; else, with * ? or [...], those whose whole name matches the glob "
                        "(-k 'res*'); else those whose name contains it (-k res). Case-sensitive; matrix points "
                        "share their experiment's name; given once")
    p.add_argument("--max-experiments", type=integer, metavar="N",
                   help="refuse a suite that expands to more than N experiments (default 1000)")


def cmd_run(args) -> int:
    from harness.core import distributed
    from harness.core.determinism import prepare_process
    from harness.suite import load_suite

    shard = _shard(args)
    suite = load_suite(args.suite, seed=args.seed, select=args.select, max_experiments=args.max_experiments,
                       overrides=args.overrides)  # all input checks first (every process)
    if args.resume is not None and not args.resume.is_dir():
        raise UserError(f"--resume {args.resume}: no such run directory")
    from harness.run import rundir, runner

    rundir.check_out_root(args.out)
    uri = args.tracking_uri
    if args.resume is not None:  # the same tracking mode; by default the same store
        uri = uri or rundir.resumed_store(args.resume, tracking=not args.no_tracking)
    if not args.no_tracking:  # one SQLite file is no store for many processes at once (exit 2)
        from harness.track.store import many_writers, refuse_shared_sqlite

        refuse_shared_sqlite(uri, many_writers(shard), args.out)
    prepare_process()  # before CUDA starts

    device = runner.resolve_device(args.device)
    mine = shard.select(suite.experiments) if shard else suite.experiments  # a shard needs only its own data
    here = distributed.world()  # under torchrun: rank, world size; rank 0 alone writes and tracks
    if here.size > 1:
        from harness.train.ddp import check_world

        check_world(suite, device, download=args.download, experiments=mine)
    if any(e.spec.kind == "train" for e in mine):
        from harness.train.datacheck import check_data  # present and sound, before anything is written

        check_data(mine, args.data_dir, download=args.download)
    if args.resume is not None:  # made under these settings and on this data, before the store is opened
        from functools import partial

        from harness.run import resume

        resume.check(args.resume, device, here.size, partial(resume_command, args, args.resume))
        resume.check_data(args.resume, mine, args.data_dir, args.download, device)
    from harness.track import make_tracker

    tracker = make_tracker(not args.no_tracking and here.writer, uri, args.out, create=args.resume is None)
    try:
        with distributed.process_group(device):  # destroyed on every way out
            outcome = runner.run_suite(suite, device=device, out_root=args.out, tracker=tracker,
                                       fail_fast=args.fail_fast, argv=sys.argv[1:] if argv_is_cli() else [],
                                       resume_dir=args.resume, data_dir=args.data_dir, download=args.download,
                                       keep_checkpoints=args.keep_checkpoints, shard=shard)
    except distributed.RankFailed as e:  # a task failed on one process: the run stopped on all of them
        return _rank_failed(e, here, args, tracker)
    except KeyboardInterrupt as e:
        from harness.run import interrupt

        e = interrupt.as_interrupted(e)
        if here.writer:  # the other processes wrote nothing to report
            print(f"interrupted ({e.name}): {_stopped(e, args, tracker)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a full disk, a results root that vanished: the runs were still closed
        if getattr(e, "run_dir", None) is None:
            raise
        print(f"error: the run stopped: {why_stopped(e)}\n{_stopped(e, args, tracker)}", file=sys.stderr)
        return 1
    if not here.writer:  # rank 0 reports the outcome and exits 1 if a row failed: exiting 1 first here would
        return 0          # make torchrun end rank 0 (SIGTERM) before it printed the summary
    bad = sum(r["status"] in runner.BAD for r in outcome.rows)
    noisy = sum(bool(r.get("noisy")) for r in outcome.rows)
    print(f"{len(outcome.rows)} rows, {bad} failed or diverged"
          + (f", {noisy} noisy (IQR > 10% of the median: a busy machine?)" if noisy else "") + f" -> {outcome.run_dir}")
    print(f"report: {outcome.run_dir / 'report.md'}\n        {outcome.run_dir / 'report.html'} (one page with the plots)")
    if tracker.tracking_uri:
        print(f"MLflow: {rundir.redact(tracker.tracking_uri)} (experiment {suite.name!r}, run {outcome.run_dir.name})")
    if outcome.tracking_failures:
        print(f"warning: {len(outcome.tracking_failures)} MLflow calls failed (first: {outcome.tracking_failures[0]}); "
              f"the results are complete, and `python -m harness sync {outcome.run_dir}` logs the journal "
              f"into MLflow", file=sys.stderr)
    if suite.note:
        print(f"note: {' '.join(suite.note.split())}")
    return outcome.exit_code


def _rank_failed(e, here, args, tracker) -> int:
    """Exit 1 after a task failed under torchrun: rank 0 names the failure, the failed row, where the
    tracebacks are and how to continue; another process prints its own traceback (it has no errors.log)."""
    print(rank_failed_line(e, here), file=sys.stderr)
    if here.writer:
        print(_stopped(e, args, tracker), file=sys.stderr)
    return 1


def rank_failed_line(e, here) -> str:
    """What a process says when a task failed under torchrun (distributed.RankFailed): rank 0 the
    failure, in which experiment, and where the tracebacks are; another process its own traceback
    first, when the failure was its own (it has no errors.log)."""
    import traceback

    if not here.writer:
        cause = e.__cause__ if isinstance(e.__cause__, Exception) else None
        mine = cause is not None and any(f["rank"] == here.rank for f in e.failures)
        return ("".join(traceback.format_exception(cause)).rstrip() + "\n" if mine else "") + \
            f"error: rank {here.rank}: stopping, a task failed ({e}); rank 0 records it"
    row = e.row or {}
    where = f" in {row['experiment']}" if "experiment" in row else ""
    log = f" (tracebacks: {e.run_dir / 'errors.log'})" if getattr(e, "run_dir", None) else ""
    return f"error: a task failed{where} under torchrun, so the run stopped on all {here.size} processes: {e}{log}"


def _stopped(e: BaseException, args, tracker) -> str:
    """What an interrupted run left, and the exact command that continues it."""
    run_dir = getattr(e, "run_dir", None)
    if run_dir is None:
        return "nothing was written (the run had not started)"
    return f"{kept(e, run_dir)}{_closed(e, tracker, run_dir)}\nContinue it with:\n  {resume_command(args, run_dir)}"


def resume_command(args, run_dir: Path, device: str | None = None, threads: int | None = None,
                   nproc: int | None = None) -> str:
    """The command line that continues `run_dir` with this invocation's flags; by default as many
    processes as now (under torchrun) and its --device, else `nproc` processes in all, `device`, and
    `OMP_NUM_THREADS=threads` (what --resume asks for when the run was made so: harness.run.resume)."""
    import os
    import shlex

    cmd = ["python", "-m", "harness", "run", str(args.suite), "--resume", str(run_dir)]
    procs = str(nproc) if nproc is not None else os.environ.get("LOCAL_WORLD_SIZE", "1")
    if procs != "1":  # under torchrun: as many processes again (+ its options)
        cmd[:2] = ["torchrun", f"--nproc_per_node={procs}", "-m"]
    if device is not None or args.device != "auto":
        cmd += ["--device", device or args.device]
    if args.no_tracking:
        cmd += ["--no-tracking"]
    elif args.tracking_uri:  # else --resume finds the store in the run directory's state.json
        cmd += ["--tracking-uri", args.tracking_uri]
    cmd += [x for flag, value in (("--seed", args.seed), ("-k", args.select), ("--data-dir", args.data_dir))
            if value is not None for x in (flag, str(value))]
    cmd += [x for text in args.overrides or [] for x in ("--set", text)]
    cmd += [flag for flag, on in (("--fail-fast", args.fail_fast), ("--download", args.download),
                                  ("--keep-checkpoints", args.keep_checkpoints)) if on]
    return (f"OMP_NUM_THREADS={threads} " if threads is not None else "") + shlex.join(cmd)


def why_stopped(error: BaseException | None) -> str:
    """An error in a few words: a full disk (ENOSPC, or SQLite's "database or disk is full" inside
    MLflow's exception) said so, else the error's first line."""
    import errno

    if error is None:
        return "unknown"
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        where = f": {error.filename}" if getattr(error, "filename", None) else ""
        return f"the disk is full ({error.strerror}{where})"
    if "database or disk is full" in str(error):
        return "the disk is full (the MLflow store: database or disk is full)"
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def kept(e: BaseException, run_dir, again: str = "`--resume` runs them again") -> str:
    """Which of the run's files its cleanup wrote (runner._abort): only those are claimed; `again`: what
    makes the rows that could not be written."""
    from harness.run.runner import WRITTEN

    rows, written = getattr(e, "rows", 0), getattr(e, "written", WRITTEN)
    if tuple(written) == WRITTEN:
        return f"{rows} finished rows are in {run_dir} (results, steps, report)"
    missing = ", ".join(w for w in WRITTEN if w not in written)
    why = why_stopped(getattr(e, "write_error", None))
    if not written:
        return f"the {rows} finished rows could not be written into {run_dir}: {why}; {again}"
    return f"{rows} finished rows are in {run_dir} ({', '.join(written)}; not written: {missing}: {why})"


def _closed(e: BaseException, tracker, run_dir) -> str:
    """Whether the open MLflow runs were ended KILLED, and if not, what ends them later."""
    if not tracker.tracking_uri:
        return "."
    unclosed = getattr(tracker, "unclosed", [])
    if not unclosed:
        return "; its open MLflow runs ended KILLED."
    later = "`--resume` below continues them"
    if getattr(e, "journal_error", None) is None:  # the journal has the close: a sync replays it
        later += f", or `python -m harness sync {run_dir}` ends them KILLED"
    return (f".\n{len(unclosed)} open MLflow run(s) could not be ended: {why_stopped(tracker.close_error)}; they stay "
            f"RUNNING until {later}, once there is space.")


def _shard(args):
    """--shard I/N|auto as a Shard, or None without it (harness.suite.shard)."""
    import os

    from harness.suite.shard import parse_shard

    return None if args.shard is None else parse_shard(args.shard, os.environ)


def argv_is_cli() -> bool:
    return Path(sys.argv[0]).name in ("__main__.py", "harness")


def cmd_list(args) -> int:
    from harness.run.estimate import duration, headline, too_long
    from harness.suite import load_suite

    from harness.core.kinds import KINDS

    shard = _shard(args)
    suite = load_suite(args.suite, seed=args.seed, select=args.select, max_experiments=args.max_experiments,
                       overrides=args.overrides)
    total = 0
    print(f"{suite.name}: {suite.description}".rstrip(": "))
    experiments = shard.select(suite.experiments) if shard else suite.experiments
    if shard:
        print(f"shard {shard}: {len(experiments)} of the {len(suite.experiments)} experiments")
    plan, device = (None, None) if args.no_estimate else _estimate(experiments, args.device)
    for i, exp in enumerate(experiments):
        spec = exp.spec
        n, what = KINDS.get(spec.kind).describe(spec)
        total += n
        took = f"  ~{duration(plan.experiment_s(i))}" if plan else ""
        print(f"  {exp.id:<28} {spec.kind:<13} seed {spec.seed:<3} {what}  [{n} rows]{took}")
    if plan is not None:
        print(headline(plan, device))
        warning = too_long(plan, device)
        if warning:
            print(warning, file=sys.stderr)
    print(f"{len(experiments)} experiments, {total} rows")
    return 0


def _estimate(experiments, device: str):
    """(the suite's Plan (harness.run.estimate), the device `run --device` would pick)."""
    from harness.core.determinism import prepare_process
    from harness.run import runner
    from harness.run.estimate import Plan

    prepare_process()  # before CUDA starts, as in run
    device = runner.resolve_device(device)
    return Plan.build(experiments, device), device


def cmd_summary(args) -> int:
    try:
        shape = tuple(int(x) for x in args.input.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise UserError(f"--input {args.input}: give four positive integers N,C,H,W, e.g. 1,1,96,96")
    from harness.core.envinfo import gib, host_memory_bytes
    from harness.models import MODELS, create_model, estimate_size, summary_table

    MODELS.get(args.model)  # an unknown model: its did-you-mean first
    size = estimate_size(args.model, shape)  # arithmetic: nothing built yet
    need = None if size is None else 4 * (math.prod(shape) + size.activations + size.params)
    if need is not None and need > host_memory_bytes():
        raise UserError(f"--input {args.input}: model {args.model} on this input needs about {gib(need)} (the batch, "
                        f"every layer's output and the weights, fp32), more than this machine's "
                        f"{gib(host_memory_bytes())} of memory; give a smaller N or H,W")

    model = create_model(args.model, in_channels=shape[1], input_size=shape[2:])
    rows = summary_table(model, shape)
    print(f"{args.model} on input {shape}")
    print(f"{'layer':<8} {'type':<18} {'output shape':<20} {'params':>12} {'FLOPs':>16}")
    for r in rows:
        shape_text = str(tuple(r["output_shape"])) if r.get("output_shape") else ""
        print(f"{r['layer']:<8} {r.get('type', ''):<18} {shape_text:<20} {r['params']:>12,} {r['flops']:>16,}")
    return 0


def cmd_env(args) -> int:
    import json

    from harness.core import envinfo

    info = envinfo.collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "summary": cmd_summary, "env": cmd_env}
