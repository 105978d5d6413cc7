"""launch, merge: a suite as shards on many processes or machines (harness.scale, docs/scaling.md)."""
from __future__ import annotations

import sys
from pathlib import Path

from harness.cli.runs import add_selection, integer


def add(sub) -> None:
    launch = sub.add_parser("launch", help="run a suite as N shards (local processes, Slurm, Ray), wait, merge, "
                                           "sync into MLflow")
    launch.add_argument("suite", type=Path, nargs="?", help="suite YAML file or name in suites/ (not with --resume)")
    launch.add_argument("--launcher", choices=("local", "slurm", "ray"),
                        help="local (default): subprocesses; slurm: submitit (harness[slurm]); ray: harness[ray]")
    launch.add_argument("--shards", type=integer, metavar="N", help="how many parts the suite runs as")
    launch.add_argument("--gpus-per-shard", type=integer, metavar="G", help="GPUs each shard asks for (slurm, ray)")
    launch.add_argument("--partition", metavar="P", help="Slurm partition")
    launch.add_argument("--time-min", type=integer, metavar="T", help="Slurm time limit per shard, minutes")
    launch.add_argument("--resume", type=Path, metavar="LAUNCH_DIR", help="resubmit only the shards of that launch "
                                                                         "that did not finish")
    for flag, kw in (("--device", dict(choices=("auto", "cpu", "cuda"))), ("--data-dir", dict(metavar="DIR")),
                     ("--tracking-uri", dict(metavar="URI")), ("--out", dict(type=Path, default=Path("results")))):
        launch.add_argument(flag, help=f"as for run ({flag})", **kw)
    for flag in ("--no-tracking", "--download", "--fail-fast", "--keep-checkpoints"):
        launch.add_argument(flag, action="store_true", help=f"as for run ({flag})")
    add_selection(launch)
    merge = sub.add_parser("merge", help="merge the shards of a suite (run --shard I/N) into one results table "
                                         "and report; exit 1 naming a missing or unfinished shard")
    merge.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="shard run directories, or folders of them")
    merge.add_argument("--out", type=Path, metavar="DIR",
                       help="a results root, which gets a new run directory <suite>/<UTC time>-merged-<id>/ "
                            "(default: results/), or a new path to write the merged run into; never an existing "
                            "run directory")


def cmd_launch(args) -> int:
    from harness.scale import launch

    return launch.from_cli(args)


def cmd_merge(args) -> int:
    from harness.run.rundir import check_out
    from harness.scale import merge

    out = args.out or Path("results")
    check_out(out, "run")  # before anything is read or written
    new_path = args.out is not None and not out.exists()  # else a results root: a new run directory below it
    outcome = merge.merge(args.paths, out if new_path else None, out_root=out)
    for problem in outcome.problems():
        print(f"error: {problem}", file=sys.stderr)
    print(f"{outcome.rows} rows from {outcome.count - len(outcome.missing)} of {outcome.count} shards "
          f"-> {outcome.dest}\nreport: {outcome.dest / 'report.md'}\n        {outcome.dest / 'report.html'}")
    return outcome.exit_code


COMMANDS = {"launch": cmd_launch, "merge": cmd_merge}
