"""`python -m harness`: subcommands only: parse, call one function, print, return an exit code.

Exit codes: 0 all good; 1 something ran and failed; 2 the input was wrong and nothing ran.
Nothing heavy is imported at start-up (torch, mlflow and pandas load inside the commands), so
`--help` answers at once. Each module here adds its commands' parsers (`add`) and their functions
(`COMMANDS`): runs.py (run, list, summary, env), views.py (report, dashboard, sync, ui), gate.py
(baseline, check), scale.py (launch, merge), reproduce.py (reproduce).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli import gate, reproduce, runs, scale, views
from harness.core.errors import UserError

EXAMPLES = """\
examples:
  python -m harness run suites/kernels.yaml             run the kernel study on the best device
  python -m harness run suites/kernels.yaml -k corr2d   only the experiment corr2d (or those whose name contains it)
  python -m harness run smoke --set epochs=1 --set lenet.lr=0.05   suites/smoke.yaml with fields changed
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
  python -m harness reproduce results/smoke/<run>       run it again: bitwise identical, or what differs
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark and reproduce the convolutional networks of d2l chapters 7-8.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for part in PARTS:
        part.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from harness.run import interrupt  # no torch, mlflow or pandas
    from harness.suite.names import find_suite

    args = build_parser().parse_args(argv)
    try:
        if isinstance(getattr(args, "suite", None), Path):  # a SUITE argument: `run smoke` is suites/smoke.yaml
            args.suite = find_suite(args.suite)
        with interrupt.handled():  # SIGTERM and SIGHUP end a command the way Ctrl-C does
            return COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        e = interrupt.as_interrupted(e)
        print(f"interrupted ({e.name})", file=sys.stderr)
        return e.exit_code


PARTS = (runs, views, reproduce, gate, scale)
COMMANDS = {name: fn for part in PARTS for name, fn in part.COMMANDS.items()}
