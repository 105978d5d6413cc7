"""reproduce: run a recorded run again, into a new run directory, and judge each experiment
(harness.views.reproduce, harness.views.verdict). Exit 0 when every strict-mode experiment reproduced
bitwise, 1 when one did not (or a row failed, or the recorded run did not finish and --only does not
restrict the reproduction to what it recorded), 2 on bad input."""
from __future__ import annotations

import sys
from pathlib import Path

from harness.cli.runs import integer


def add(sub) -> None:
    rep = sub.add_parser("reproduce", help="run a recorded run again and say, per experiment, whether it reproduced "
                                           "bitwise, within tolerance, or differs (and which recorded settings differ)")
    rep.add_argument("run", metavar="RUN", help="a run directory (results/<suite>/<UTC time>-<id>), or an MLflow run "
                                                "id with --tracking-uri")
    rep.add_argument("--only", metavar="EXPERIMENT", help="only this experiment (its exact id, as in results.csv)")
    rep.add_argument("--epochs", type=integer, metavar="N",
                     help="reproduce only the first N epochs of each training (compared at epoch N)")
    rep.add_argument("--device", choices=("auto", "cpu", "cuda"),
                     help="default: the device class the run recorded")
    rep.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                     help="results root for the new run (default: results/)")
    rep.add_argument("--tracking-uri", metavar="URI",
                     help="MLflow store: where RUN is looked up when it is a run id, and where the new run is logged "
                          "(default: $MLFLOW_TRACKING_URI, else sqlite:///DIR/mlflow.db)")
    rep.add_argument("--no-tracking", action="store_true", help="do not log the new run to MLflow")
    rep.add_argument("--data-dir", metavar="DIR", help="directory holding FashionMNIST/raw/ (as `run --data-dir`)")


def cmd_reproduce(args) -> int:
    import tempfile

    from harness.cli.runs import argv_is_cli, rank_failed_line, why_stopped
    from harness.core import distributed
    from harness.run import rundir
    from harness.views import reproduce, verdict

    here = distributed.world()  # under torchrun: the same processes as `run`; rank 0 alone writes and says
    say = print if here.writer else (lambda *a, **k: None)
    with tempfile.TemporaryDirectory(prefix="harness-reproduce-") as scratch:
        rec = reproduce.locate(args.run, args.tracking_uri, Path(scratch))
        suite, not_run = reproduce.plan(rec, args.only, args.epochs)
        unfinished, fails = reproduce.incomplete(rec, not_run, args.only)
        device, tracker = reproduce.prepare(rec, suite, device=args.device, out=args.out, data_dir=args.data_dir,
                                            tracking=not args.no_tracking, tracking_uri=args.tracking_uri)
        env = rec.env
        say(f"reproducing {suite.name} run {rec.run_id} ({rec.origin}): {len(suite.experiments)} experiment(s) on "
            f"{device}; recorded on {env.get('device')} ({env.get('gpu_name') or env.get('cpu_model')}), "
            f"torch {env.get('torch')}, commit {str(env.get('git_commit'))[:12]}"
            + (f"; first {args.epochs} epoch(s)" if args.epochs else ""))
        for line in reproduce.checkout_warnings(rec) + reproduce.world_warnings(rec, args.run) + [unfinished or ""]:
            if line:
                say(f"warning: {line}", file=sys.stderr)
        try:
            with distributed.process_group(device):  # a plain process: nothing; under torchrun: DDP's group
                outcome = reproduce.rerun(rec, suite, device=device, tracker=tracker, out=args.out,
                                          data_dir=args.data_dir, argv=sys.argv[1:] if argv_is_cli() else [])
        except distributed.RankFailed as e:  # a task failed on one process: the rerun stopped on all of them
            print(rank_failed_line(e, here), file=sys.stderr)
            if here.writer and e.run_dir is not None:
                print(f"{e.rows} finished rows are in {e.run_dir}: no verdict", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: the runner closed what it opened
            from harness.run import interrupt

            e = interrupt.as_interrupted(e)
            say(f"interrupted ({e.name}): {_partial(e, args.run)}", file=sys.stderr)
            return e.exit_code
        except OSError as e:  # a full disk, a results root that vanished: the runs were still closed
            if getattr(e, "run_dir", None) is None:
                raise
            say(f"error: the reproduction stopped: {why_stopped(e)}\n{_partial(e, args.run)}", file=sys.stderr)
            return 1
        if not here.writer:
            return 0
        verdicts = reproduce.judge_rerun(rec, outcome.run_dir)
    print(f"new run: {outcome.run_dir}" + (f" (MLflow: {rundir.redact(tracker.tracking_uri)}, tag harness.reproduces="
                                           f"{rec.run_id})" if tracker.tracking_uri else ""))
    print(verdict.format_verdicts(verdicts, rec.run_id, outcome.run_dir.name, [] if args.only else not_run))
    if unfinished:
        print(f"{'not judged' if fails else 'note'}: {unfinished}")
    return max(verdict.exit_code(verdicts, outcome.exit_code != 0), int(fails))


def _partial(e: BaseException, run: str) -> str:
    """Where a reproduction that stopped early left its rows, and that it gave no verdict."""
    run_dir = getattr(e, "run_dir", None)
    if run_dir is None:
        return "nothing was written (the reproduction had not started)"
    from harness.cli.runs import kept

    again = f"run `python -m harness reproduce {run}` again"
    return f"the reproduction stopped early, no verdict: {kept(e, run_dir, again)}; {again} for one"


COMMANDS = {"reproduce": cmd_reproduce}
