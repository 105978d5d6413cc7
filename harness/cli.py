"""`python -m harness`: subcommands only: parse, call one function, print, return an exit code.

Exit codes: 0 all good; 1 something ran and failed; 2 the input was wrong and nothing ran.
Nothing heavy is imported at start-up (torch, mlflow and pandas load inside the commands), so
`--help` answers at once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.core.errors import UserError

EXAMPLES = """\
examples:
  python -m harness run suites/kernels.yaml             run the kernel study on the best device
  python -m harness run suites/kernels.yaml -k corr2d   only experiments whose name contains corr2d
  python -m harness list suites/kernels.yaml            what would run, after matrix expansion
  python -m harness env                                 what this machine is
  python -m harness check suites/kernels-ci.yaml --baseline results/baselines/kernels-cpu.json
                                                        CI gate: exit 1 if a kernel got slower
  python -m harness report results/kernels              compare runs: speedups, mean ± std, two runs side by side
  python -m harness dashboard                           static HTML dashboard in dashboards/site/
  python -m harness ui                                  MLflow UI on 127.0.0.1 for results/mlflow.db
  python -m harness run suites/training.yaml --no-tracking   offline (e.g. on a GPU node), then later:
  python -m harness sync results/training/<run>         log that run directory into MLflow
  python -m harness launch suites/smoke.yaml --shards 2 run as 2 shards side by side, merge, log into MLflow
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark and reproduce the convolutional networks of d2l chapters 7-8.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a suite, log it to MLflow, write results and a report")
    run.add_argument("suite", type=Path, help="suite YAML file, e.g. suites/kernels.yaml")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                     help="auto (default) picks CUDA when present")
    run.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                     help="results root (default: results/); each run writes DIR/<suite>/<UTC time>-<id>/")
    run.add_argument("--tracking-uri", metavar="URI",
                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///DIR/mlflow.db)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow (results are still written)")
    _add_selection(run, shard=True)
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed experiment")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue an interrupted run: finished experiments are kept, an interrupted "
                          "training restarts from its last checkpoint, MLflow runs are continued")
    run.add_argument("--data-dir", metavar="DIR",
                     help="directory holding FashionMNIST/raw/ (default: $HARNESS_DATA_DIR, else ~/.cache/harness/data)")
    run.add_argument("--download", action="store_true", help="download Fashion-MNIST if missing (needs internet)")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep each finished training's last checkpoint (default: removed once the experiment is done)")

    lst = sub.add_parser("list", help="show what a suite would run, after matrix expansion")
    lst.add_argument("suite", type=Path)
    _add_selection(lst, shard=True)

    summ = sub.add_parser("summary", help="a model's layers: output shapes, parameters, FLOPs")
    summ.add_argument("model", help="registered model name, e.g. lenet, vgg, resnet18, resnext")
    summ.add_argument("--input", default="1,1,28,28", metavar="N,C,H,W", help="input shape (default 1,1,28,28)")

    env = sub.add_parser("env", help="what this machine is: python, torch, CUDA, cuDNN, GPU, git")
    env.add_argument("--json", action="store_true", help="print JSON")
    _add_comparison(sub)
    _add_gate(sub)
    _add_scale(sub)
    return parser


def _add_selection(p: argparse.ArgumentParser, shard: bool = False) -> None:
    if shard:
        p.add_argument("--shard", metavar="I/N", help="only shard I of N: the j-th experiment goes to shard j %% N; "
                                                      "auto: I and N from a Slurm job array")
    p.add_argument("--seed", type=int, help="override every experiment's seed (replaces a seed matrix axis)")
    p.add_argument("-k", dest="select", metavar="SUBSTRING", help="only experiments whose name contains SUBSTRING")
    p.add_argument("--max-experiments", type=int, metavar="N",
                   help="refuse a suite that expands to more than N experiments (default 1000)")


def main(argv: list[str] | None = None) -> int:
    from harness.run import interrupt  # no torch, mlflow or pandas

    args = build_parser().parse_args(argv)
    try:
        with interrupt.handled():  # SIGTERM and SIGHUP end a command the way Ctrl-C does
            return COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        e = interrupt.as_interrupted(e)
        print(f"interrupted ({e.name})", file=sys.stderr)
        return e.exit_code


def cmd_run(args) -> int:
    from harness.core.determinism import prepare_process
    from harness.suite import load_suite

    shard = _shard(args)
    suite = load_suite(args.suite, seed=args.seed, select=args.select,
                       max_experiments=args.max_experiments)  # all input checks first
    if args.resume is not None and not args.resume.is_dir():
        raise UserError(f"--resume {args.resume}: no such run directory")
    from harness.run import rundir, runner

    rundir.check_out_root(args.out)
    prepare_process()  # before CUDA starts

    device = runner.resolve_device(args.device)
    mine = shard.select(suite.experiments) if shard else suite.experiments  # a shard needs only its own data
    if any(e.spec.kind == "train" for e in mine):
        from harness.train.datacheck import check_data  # present and sound, before anything is written

        check_data(mine, args.data_dir, download=args.download)
    from harness.track import make_tracker

    uri = args.tracking_uri
    if args.resume is not None:  # the same tracking mode; by default the same store
        recorded = rundir.resumed_store(args.resume, tracking=not args.no_tracking)
        uri = uri or recorded
    tracker = make_tracker(not args.no_tracking, uri, args.out, create=args.resume is None)
    try:
        outcome = runner.run_suite(suite, device=device, out_root=args.out, tracker=tracker,
                                   fail_fast=args.fail_fast, argv=sys.argv[1:] if argv_is_cli() else [],
                                   resume_dir=args.resume, data_dir=args.data_dir, download=args.download,
                                   keep_checkpoints=args.keep_checkpoints, shard=shard)
    except KeyboardInterrupt as e:
        from harness.run import interrupt

        e = interrupt.as_interrupted(e)
        print(f"interrupted ({e.name}): {_stopped(e, args, tracker)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a full disk, a results root that vanished: the runs were still closed
        if getattr(e, "run_dir", None) is None:
            raise
        print(f"error: the run stopped: {e}\n{_stopped(e, args, tracker)}", file=sys.stderr)
        return 1
    bad = sum(r["status"] in runner.BAD for r in outcome.rows)
    noisy = sum(bool(r.get("noisy")) for r in outcome.rows)
    print(f"{len(outcome.rows)} rows, {bad} failed or diverged"
          + (f", {noisy} noisy (IQR > 10% of the median: a busy machine?)" if noisy else "") + f" -> {outcome.run_dir}")
    print(f"report: {outcome.run_dir / 'report.md'}")
    if tracker.tracking_uri:
        print(f"MLflow: {tracker.tracking_uri} (experiment {suite.name!r}, run {outcome.run_dir.name})")
    if outcome.tracking_failures:
        print(f"warning: {len(outcome.tracking_failures)} MLflow calls failed (first: {outcome.tracking_failures[0]}); "
              f"the results are complete, and `python -m harness sync {outcome.run_dir}` logs the journal "
              f"into MLflow", file=sys.stderr)
    return outcome.exit_code


def _stopped(e: BaseException, args, tracker) -> str:
    """What an interrupted run left, and the exact command that continues it."""
    import shlex

    run_dir = getattr(e, "run_dir", None)
    if run_dir is None:
        return "nothing was written (the run had not started)"
    cmd = ["python", "-m", "harness", "run", str(args.suite), "--resume", str(run_dir)]
    if args.device != "auto":
        cmd += ["--device", args.device]
    if args.no_tracking:
        cmd += ["--no-tracking"]
    elif args.tracking_uri:  # else --resume finds the store in the run directory's state.json
        cmd += ["--tracking-uri", args.tracking_uri]
    cmd += [x for flag, value in (("--seed", args.seed), ("-k", args.select), ("--data-dir", args.data_dir))
            if value is not None for x in (flag, str(value))]
    cmd += [flag for flag, on in (("--fail-fast", args.fail_fast), ("--download", args.download),
                                  ("--keep-checkpoints", args.keep_checkpoints)) if on]
    mlflow = "" if not tracker.tracking_uri else "; its open MLflow runs ended KILLED"
    return (f"{getattr(e, 'rows', 0)} finished rows are in {run_dir} (results, steps, report){mlflow}.\n"
            f"Continue it with:\n  {shlex.join(cmd)}")


def _shard(args):
    """--shard I/N|auto as a Shard, or None without it (harness.suite.shard)."""
    import os

    from harness.suite.shard import parse_shard

    return None if args.shard is None else parse_shard(args.shard, os.environ)


def argv_is_cli() -> bool:
    return Path(sys.argv[0]).name in ("__main__.py", "harness")


def cmd_list(args) -> int:
    from harness.suite import load_suite

    from harness.core.kinds import KINDS

    shard = _shard(args)
    suite = load_suite(args.suite, seed=args.seed, select=args.select, max_experiments=args.max_experiments)
    total = 0
    print(f"{suite.name}: {suite.description}".rstrip(": "))
    experiments = shard.select(suite.experiments) if shard else suite.experiments
    if shard:
        print(f"shard {shard}: {len(experiments)} of the {len(suite.experiments)} experiments")
    for exp in experiments:
        spec = exp.spec
        n, what = KINDS.get(spec.kind).describe(spec)
        total += n
        print(f"  {exp.id:<28} {spec.kind:<13} seed {spec.seed:<3} {what}  [{n} rows]")
    print(f"{len(experiments)} experiments, {total} rows")
    return 0


def cmd_summary(args) -> int:
    try:
        shape = tuple(int(x) for x in args.input.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise UserError(f"--input {args.input}: give four positive integers N,C,H,W, e.g. 1,1,96,96")
    from harness.models import create_model, summary_table

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


def _add_comparison(sub) -> None:
    """report, dashboard, ui: looking at runs that already happened."""
    rep = sub.add_parser("report", help="compare runs: kernel speedups, models mean ± std over seeds, two runs side by side")
    _add_run_selection(rep)
    rep.add_argument("--by", choices=("run", "commit", "device"),
                     help="compare exactly two runs / commits / devices (default: two runs, else two commits)")
    rep.add_argument("--format", choices=("md", "csv", "html"), help="default: from --out's suffix, else md")
    rep.add_argument("--out", type=Path, metavar="FILE", help="write the report here instead of printing it")
    rep.add_argument("--from-mlflow", action="store_true", help="read the runs from MLflow instead of results files")
    rep.add_argument("--tracking-uri", metavar="URI",
                     help="with --from-mlflow (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db)")

    dash = sub.add_parser("dashboard", help="write a static HTML dashboard of runs (opens offline from the file system)")
    _add_run_selection(dash)
    dash.add_argument("--out", type=Path, default=Path("dashboards/site"), metavar="DIR",
                      help="directory to write index.html into (default: dashboards/site/)")

    sync = sub.add_parser("sync", help="log finished run directories (e.g. made with --no-tracking) into MLflow")
    sync.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR",
                      help="run directories, or folders holding them (every tracking.jsonl below is synced)")
    sync.add_argument("--tracking-uri", metavar="URI",
                      help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///DIR/mlflow.db)")
    sync.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                      help="results root whose mlflow.db and mlartifacts/ to use (default: results/, as `run --out`)")

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the store `run` writes")
    ui.add_argument("--port", type=int, default=5000, help="TCP port (default 5000)")
    ui.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                    help="results root whose mlflow.db to open (default: results/, as `run --out`)")
    ui.add_argument("--tracking-uri", metavar="URI", help="another store (default: $MLFLOW_TRACKING_URI, else DIR/mlflow.db)")


def _add_run_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", type=Path, metavar="RUN_DIR",
                   help="run directories, suite directories or results roots (default: results/)")
    p.add_argument("--suite", metavar="NAME", help="only runs of this suite")
    p.add_argument("--since", metavar="DATE", help="only runs started at or after DATE (YYYY-MM-DD or ISO time, UTC)")


def cmd_report(args) -> int:
    from harness.views import report

    fmt = args.format or {".csv": "csv", ".html": "html", ".htm": "html"}.get(args.out.suffix if args.out else "", "md")
    if args.from_mlflow and args.paths:
        raise UserError("--from-mlflow reads the runs from the tracking store: give no RUN_DIR "
                        "(select with --suite / --since)")
    if args.tracking_uri and not args.from_mlflow:
        raise UserError("--tracking-uri is read with --from-mlflow only; add --from-mlflow")
    print(report.report_runs(args.paths, args.suite, args.since, fmt, args.by, args.out,
                             args.tracking_uri if args.from_mlflow else None, args.from_mlflow), end="")
    return 0


def cmd_dashboard(args) -> int:
    from harness.views import dashboard

    index = dashboard.build(args.paths, args.out, suite=args.suite, since=args.since)
    print(f"dashboard: {index.resolve().as_uri()}")
    return 0


def cmd_sync(args) -> int:
    from harness.track.sync import sync_paths

    sync_paths(args.paths, args.tracking_uri, args.out)
    return 0


def cmd_ui(args) -> int:
    from harness.views import ui

    return ui.serve(ui.store_uri(args.tracking_uri, args.results), args.port, args.results)


# ---- the CI regression gate (harness.gate.check) ----------------------------------------------

def _add_gate(sub) -> None:
    devices = dict(default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default) picks CUDA when present; the baseline's device class must match")
    rounds = dict(type=int, default=None, metavar="N", help="interleaved timing rounds (default 10)")
    base = sub.add_parser("baseline", help="record a kernel suite's speed as a baseline file for `check`")
    base.add_argument("suite", type=Path, help="kernel suite, e.g. suites/kernels-ci.yaml")
    base.add_argument("--out", type=Path, required=True, metavar="FILE",
                      help="baseline file to write, e.g. results/baselines/kernels-cpu.json")
    base.add_argument("--device", **devices)
    base.add_argument("--rounds", **rounds)
    base.add_argument("--allow-dirty", action="store_true",
                      help="record from a tree with uncommitted changes (its commit cannot be measured again, "
                           "so the baseline serves only a machine like this one)")
    check = sub.add_parser("check", help="CI gate: time a kernel suite against a baseline or another revision, "
                                         "exit 1 on a regression")
    check.add_argument("suite", type=Path, help="kernel suite, e.g. suites/kernels-ci.yaml")
    other = check.add_mutually_exclusive_group(required=True)
    other.add_argument("--baseline", type=Path, metavar="FILE",
                       help="baseline file recorded by `baseline`: its commit is measured side by side with this tree")
    other.add_argument("--against", metavar="REV",
                       help="measure REV's kernels (any git revision) and this tree's side by side on this machine")
    check.add_argument("--threshold", type=float, default=None, metavar="FRACTION",
                       help="slower than this and significant against the noise: regressed (default 0.25 against "
                            "stored numbers, 0.05 side by side)")
    check.add_argument("--stored", action="store_true",
                       help="with --baseline: compare with its stored numbers instead (only on the machine type "
                            "that recorded them; faster, less robust to a noisy machine)")
    check.add_argument("--rounds", **rounds)
    check.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                       help="results root (default: results/); writes DIR/<suite>-check/<UTC time>-<id>/check.md")
    check.add_argument("--device", **devices)


def cmd_baseline(args) -> int:
    from harness.core.determinism import prepare_process
    from harness.gate.baseline_file import record_baseline
    from harness.gate.measure import ROUNDS
    from harness.run import runner

    prepare_process()  # before CUDA starts
    return record_baseline(args.suite, args.out, runner.resolve_device(args.device),
                           rounds=args.rounds or ROUNDS, allow_dirty=args.allow_dirty)


def cmd_check(args) -> int:
    from harness.core.determinism import prepare_process
    from harness.gate.check import run_check
    from harness.run import runner

    prepare_process()
    return run_check(args.suite, args.out, runner.resolve_device(args.device), baseline_path=args.baseline,
                             against=args.against, threshold=args.threshold, rounds=args.rounds, stored=args.stored)


# ---- scaling out: shards, launchers, merging (harness.scale) ------------------------------------

def _add_scale(sub) -> None:
    launch = sub.add_parser("launch", help="run a suite as N shards (local processes, Slurm, Ray), wait, merge, "
                                           "sync into MLflow")
    launch.add_argument("suite", type=Path, nargs="?", help="suite YAML file (not with --resume)")
    launch.add_argument("--launcher", choices=("local", "slurm", "ray"),
                        help="local (default): subprocesses; slurm: submitit (harness[slurm]); ray: harness[ray]")
    launch.add_argument("--shards", type=int, metavar="N", help="how many parts the suite runs as")
    launch.add_argument("--gpus-per-shard", type=int, metavar="G", help="GPUs each shard asks for (slurm, ray)")
    launch.add_argument("--partition", metavar="P", help="Slurm partition")
    launch.add_argument("--time-min", type=int, metavar="T", help="Slurm time limit per shard, minutes")
    launch.add_argument("--resume", type=Path, metavar="LAUNCH_DIR", help="resubmit only the shards of that launch "
                                                                         "that did not finish")
    for flag, kw in (("--device", dict(choices=("auto", "cpu", "cuda"))), ("--data-dir", dict(metavar="DIR")),
                     ("--tracking-uri", dict(metavar="URI")), ("--out", dict(type=Path, default=Path("results")))):
        launch.add_argument(flag, help=f"as for run ({flag})", **kw)
    for flag in ("--no-tracking", "--download", "--fail-fast", "--keep-checkpoints"):
        launch.add_argument(flag, action="store_true", help=f"as for run ({flag})")
    _add_selection(launch)
    merge = sub.add_parser("merge", help="merge the shards of a suite (run --shard I/N) into one results table "
                                         "and report; exit 1 naming a missing or unfinished shard")
    merge.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="shard run directories, or folders of them")
    merge.add_argument("--out", type=Path, metavar="DIR",
                       help="directory to write into (default: results/<suite>/<UTC time>-merged-<id>/)")


def cmd_launch(args) -> int:
    from harness.scale import launch

    return launch.from_cli(args)


def cmd_merge(args) -> int:
    from harness.scale import merge

    outcome = merge.merge(args.paths, args.out)
    for problem in outcome.problems():
        print(f"error: {problem}", file=sys.stderr)
    print(f"{outcome.rows} rows from {outcome.count - len(outcome.missing)} of {outcome.count} shards "
          f"-> {outcome.dest}\nreport: {outcome.dest / 'report.md'}")
    return outcome.exit_code


COMMANDS = {"run": cmd_run, "list": cmd_list, "summary": cmd_summary, "env": cmd_env, "report": cmd_report,
            "dashboard": cmd_dashboard, "sync": cmd_sync, "ui": cmd_ui, "baseline": cmd_baseline, "check": cmd_check,
            "launch": cmd_launch, "merge": cmd_merge}
