"""baseline, check: the CI kernel-speed gate (harness.gate, docs/gate.md)."""
from __future__ import annotations

import sys
from pathlib import Path

from harness.cli.runs import integer


def add(sub) -> None:
    devices = dict(default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default) picks CUDA when present; the baseline's device class must match")
    base = sub.add_parser("baseline", help="record a kernel suite's speed as a baseline file for `check`")
    base.add_argument("suite", type=Path, help="kernel suite, e.g. suites/kernels-ci.yaml or kernels-ci")
    base.add_argument("--out", type=Path, required=True, metavar="FILE",
                      help="baseline file to write, e.g. results/baselines/kernels-cpu.json")
    base.add_argument("--device", **devices)
    base.add_argument("--rounds", type=integer, default=None, metavar="N",
                      help="interleaved timing rounds (default 10; a check --stored against a baseline of 3 "
                           "rounds needs 7 of its own, of 5 needs 4: docs/gate.md)")
    base.add_argument("--allow-dirty", action="store_true",
                      help="record from a tree with uncommitted changes (its commit cannot be measured again, "
                           "so the baseline serves only a machine like this one)")
    check = sub.add_parser("check", help="CI gate: time a kernel suite against a baseline or another revision, "
                                         "exit 1 on a regression")
    check.add_argument("suite", type=Path, help="kernel suite, e.g. suites/kernels-ci.yaml or kernels-ci")
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
    check.add_argument("--rounds", type=integer, default=None, metavar="N",
                       help="timing rounds: pairs side by side (default 30, at least 7), rounds against stored "
                            "numbers (default 10; at least 3 to 7, by the baseline's own rounds); fewer could "
                            "never be significant, so they are refused (docs/gate.md)")
    check.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                       help="results root (default: results/); writes DIR/<suite>-check/<UTC time>-<id>/check.md")
    check.add_argument("--device", **devices)


def cmd_baseline(args) -> int:
    from harness.core.determinism import prepare_process
    from harness.gate.baseline_file import record_baseline
    from harness.gate.measure import ROUNDS
    from harness.run import runner

    prepare_process()  # before CUDA starts
    try:
        return record_baseline(args.suite, args.out, runner.resolve_device(args.device),
                               rounds=ROUNDS if args.rounds is None else args.rounds, allow_dirty=args.allow_dirty)
    except KeyboardInterrupt as e:
        return _interrupted(e, "no baseline was written (it is written once every case is timed)")


def cmd_check(args) -> int:
    from harness.core.determinism import prepare_process
    from harness.gate.check import run_check
    from harness.run import runner

    prepare_process()
    try:
        return run_check(args.suite, args.out, runner.resolve_device(args.device), baseline_path=args.baseline,
                         against=args.against, threshold=args.threshold, rounds=args.rounds, stored=args.stored)
    except KeyboardInterrupt as e:
        return _interrupted(e, "nothing was written (check.md and check.json are written once every case is "
                               "timed)")


def _interrupted(e: KeyboardInterrupt, nothing: str) -> int:
    """One line for Ctrl-C, SIGTERM or SIGHUP: what was written (the files are written whole, or
    not at all), and the signal's exit code."""
    from harness.run import interrupt

    written = getattr(e, "written", None)
    e = interrupt.as_interrupted(e)
    print(f"interrupted ({e.name}): " + (f"{written} was written in full first" if written else nothing),
          file=sys.stderr)
    return e.exit_code


COMMANDS = {"baseline": cmd_baseline, "check": cmd_check}
