"""How small a slowdown does `harness check` see, and how often does it cry wolf? The detection curve.

    python -m harness.gate.study --calibrate suites/kernels-ci.yaml --mode ab                 # side by side
    python -m harness.gate.study --calibrate suites/kernels-ci.yaml --mode stored --load 2    # 2 busy processes too

Runs `python -m harness check` many times, each in fresh processes, and counts verdicts per case:

  unchanged  --unchanged runs of unchanged code (false alarms: cases judged regressed)
  slowed     --per-level runs for each of --slowdowns (2, 5, 10, 25, 50 %): every kernel call of this
             tree made that much slower (HARNESS_REGRESS_SLOWDOWN, harness.gate.measure; in A/B
             the other side runs through the same wrapper unslowed, so only the slowdown differs)

The runs of all conditions are interleaved (the slowdowns round robin, spread evenly among the
unchanged runs), so that a machine drifting over the study affects every condition alike. Modes: `stored` records a baseline of this
machine first (unless --baseline FILE) and checks against its numbers (--stored); `ab` checks --against REV (default
HEAD: run it on a tree whose kernels are committed). `--load K` keeps K busy processes running
meanwhile (`spin`: a Python busy loop; `matmul`: a one-thread 512x512 matmul loop, which also
competes for caches and memory bandwidth).

Prints and writes (--out, default a new temporary directory) study.json and study.md: per
condition the runs, cases compared, regressed / ambiguous counts and rates, the median measured
ratio, and the check's median wall time. Exits 1 when the aim is missed: no false alarm, and at
least 95 % detection of every slowdown at least twice the threshold.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.core.errors import UserError

LOADS = {"spin": "while True: pass",
         "matmul": "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True: a @ a"}
AIM_DETECTION = 0.95


def main(argv: list[str] | None = None) -> int:
    from harness.gate.check import DEFAULT_THRESHOLD

    p = argparse.ArgumentParser(prog="python -m harness.gate.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--calibrate", action="store_true", required=True, help="run the detection study")
    p.add_argument("suite", type=Path)
    p.add_argument("--mode", choices=("stored", "ab"), default="ab")
    p.add_argument("--against", default="HEAD", metavar="REV", help="the other side in --mode ab (default HEAD)")
    p.add_argument("--baseline", type=Path, help="--mode stored: baseline file (default: record one first)")
    p.add_argument("--slowdowns", default="2,5,10,25,50", help="injected slowdowns in %% (default 2,5,10,25,50)")
    p.add_argument("--unchanged", type=int, default=15, metavar="N", help="runs of unchanged code (default 15)")
    p.add_argument("--per-level", type=int, default=3, metavar="N", help="runs per slowdown (default 3)")
    p.add_argument("--threshold", type=float, help="default: check's default for the mode")
    p.add_argument("--rounds", type=int, help="default: check's default for the mode")
    p.add_argument("--load", type=int, default=0, metavar="K", help="busy processes to run meanwhile")
    p.add_argument("--load-kind", choices=sorted(LOADS), default="spin")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", type=Path, help="where the checks write (default: a new temporary directory)")
    args = p.parse_args(argv)
    try:
        levels = _check_args(args)
    except UserError as e:  # every input before the first check (or baseline) is timed: exit 2, no traceback
        p.error(str(e))
    threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLD[args.mode]
    out = args.out or Path(tempfile.mkdtemp(prefix="regress-study-"))
    out.mkdir(parents=True, exist_ok=True)
    other = ["--against", args.against]
    if args.mode == "stored":
        baseline = args.baseline or out / "baseline.json"
        if args.baseline is None:  # recorded before any load starts, on the code under study
            _harness("baseline", str(args.suite), "--out", str(baseline), "--device", args.device, "--allow-dirty",
                     check=True)
        other = ["--baseline", str(baseline), "--stored"]
    schedule = _interleave([0.0] * args.unchanged, [lvl for _ in range(args.per_level) for lvl in levels])
    loads = [subprocess.Popen([sys.executable, "-c", LOADS[args.load_kind]]) for _ in range(args.load)]
    try:
        runs = []
        for i, level in enumerate(schedule):
            runs.append(_one_check(args, other, threshold, out / f"run-{i:03d}", level))
            r = runs[-1]
            print(f"run {i:3d} {_label(level):<10} exit {r['exit']}  {r['regressed']}/{r['compared']} regressed  "
                  f"{r['ambiguous']} ambiguous  ratios {r['min_ratio']:.3f}-{r['max_ratio']:.3f}  {r['wall_s']:.1f} s",
                  flush=True)
    finally:
        for proc in loads:
            proc.kill()
            proc.wait()
    condition = f"{args.mode}, " + (f"load {args.load} x {args.load_kind}" if args.load else "quiet")
    table = _curve(runs, levels)
    aim = (table[0]["regressed"] == 0 and all(row["rate"] >= AIM_DETECTION for row in table[1:]
                                               if row["slowdown_pct"] >= 200 * threshold))
    detected = [row["slowdown_pct"] for row in table[1:] if row["rate"] >= AIM_DETECTION]
    summary = {"condition": condition, "mode": args.mode, "threshold": threshold, "rounds": args.rounds,
               "load": args.load, "load_kind": args.load_kind if args.load else None,
               "smallest_slowdown_detected_95pct": min(detected) if detected else None,
               "check_wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 1),
               "cpu_model": _env(runs).get("cpu_model"), "torch": _env(runs).get("torch"), "aim_met": aim}
    (out / "study.json").write_text(json.dumps({"summary": summary, "curve": table, "runs": runs}, indent=2) + "\n")
    (out / "study.md").write_text(markdown(summary, table))
    print(markdown(summary, table))
    print(f"-> {out / 'study.json'}")
    return 0 if aim else 1


def _check_args(args) -> list[float]:
    """The slowdowns in %, after every argument is checked the way `check` would (UserError): a
    study whose checks cannot fail, or that runs none, measures nothing."""
    from harness.gate.baseline_file import load_baseline
    from harness.gate.check import check_attainable
    from harness.gate.measure import check_rounds

    try:
        levels = [float(x) for x in args.slowdowns.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--slowdowns {args.slowdowns}: slowdowns in %, comma-separated, e.g. 2,5,10,25,50") from None
    if not all(0 < x <= 10_000 and math.isfinite(x) for x in levels):
        raise UserError(f"--slowdowns {args.slowdowns}: each a slowdown in % above 0 (at most 10000), e.g. 2,5,10")
    if args.unchanged < 1 or args.per_level < 0 or args.load < 0:
        raise UserError("--unchanged N (at least 1: the false alarms), --per-level N and --load K (0 or more)")
    if args.threshold is not None and not 0 < args.threshold < 10:
        raise UserError(f"--threshold {args.threshold}: a fraction > 0, e.g. 0.25 for 25% slower")
    if args.baseline is not None and args.mode != "stored":
        raise UserError("--baseline FILE is the stored numbers of --mode stored; --mode ab compares with --against")
    baseline_rounds = None
    if args.mode == "stored":  # the baseline given, or the one recorded first with `baseline`'s default rounds
        from harness.gate.measure import ROUNDS

        baseline_rounds = ROUNDS if args.baseline is None else load_baseline(
            args.baseline, f"python -m harness baseline {args.suite} --out {args.baseline}")["method"]["rounds"]
    if args.rounds is not None:
        check_rounds(args.rounds)
        check_attainable(args.rounds, baseline_rounds, args.baseline)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out}: is a file, not a directory; give a directory for the checks' results")
    return levels


def _one_check(args, other: list[str], threshold: float, out: Path, level: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_REGRESS_SLOWDOWN"}
    if level:
        env["HARNESS_REGRESS_SLOWDOWN"] = str(1 + level / 100)
    extra = ["--rounds", str(args.rounds)] if args.rounds else []
    t0 = time.perf_counter()
    proc = _harness("check", str(args.suite), *other, "--threshold", str(threshold), "--out", str(out),
                    "--device", args.device, *extra, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"check exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    (check,) = out.glob("*/*/check.json")
    doc = json.loads(check.read_text())
    rows = [r for r in doc["cases"] if r["ratio"] is not None]
    return {"slowdown_pct": level, "exit": proc.returncode, "cases": len(doc["cases"]), "compared": len(rows),
            "regressed": sum(r["verdict"] == "regressed" for r in rows),
            "ambiguous": sum(r["verdict"] == "ambiguous" for r in rows),
            "ratios": [round(r["ratio"], 4) for r in rows], "min_ratio": min(r["ratio"] for r in rows),
            "max_ratio": max(r["ratio"] for r in rows), "wall_s": wall, "mode": doc["mode"],
            "env": {k: doc["current"]["env"].get(k) for k in ("cpu_model", "torch")}, "check": str(check)}


def _curve(runs: list[dict], levels: list[float]) -> list[dict]:
    table = []
    for level in [0.0, *levels]:
        rs = [r for r in runs if r["slowdown_pct"] == level]
        compared = sum(r["compared"] for r in rs)
        regressed = sum(r["regressed"] for r in rs)
        ratios = sorted(x for r in rs for x in r["ratios"])
        table.append({"slowdown_pct": level, "runs": len(rs), "compared": compared, "regressed": regressed,
                      "ambiguous": sum(r["ambiguous"] for r in rs), "rate": regressed / compared if compared else 0.0,
                      "runs_failed": sum(r["exit"] == 1 for r in rs),
                      "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
                      "ratio_p05": round(ratios[int(0.05 * (len(ratios) - 1))], 3) if ratios else None,
                      "ratio_p95": round(ratios[int(0.95 * (len(ratios) - 1))], 3) if ratios else None})
    return table


def markdown(summary: dict, table: list[dict]) -> str:
    out = [f"Detection curve, {summary['condition']} (threshold {summary['threshold']:.0%}, {summary['cpu_model']}, "
           f"torch {summary['torch']}; check's median wall time {summary['check_wall_s_median']} s)", "",
           "| injected slowdown | runs | cases compared | judged regressed | rate | ambiguous | runs exiting 1 "
           "| measured ratio p05 / median / p95 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in table:
        what = "none (false alarms)" if row["slowdown_pct"] == 0 else f"{row['slowdown_pct']:g} %"
        out.append(f"| {what} | {row['runs']} | {row['compared']} | {row['regressed']} | {row['rate']:.1%} | "
                   f"{row['ambiguous']} | {row['runs_failed']} | {row['ratio_p05']} / {row['ratio_median']} / "
                   f"{row['ratio_p95']} |")
    smallest = summary["smallest_slowdown_detected_95pct"]
    out += ["", f"Smallest slowdown detected in at least 95 % of cases: "
                f"{f'{smallest:g} %' if smallest is not None else 'none'}; aim met: {summary['aim_met']}"]
    return "\n".join(out) + "\n"


def _interleave(a: list, b: list) -> list:
    """a and b merged so that each is spread evenly over the whole (a first)."""
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and i * len(b) <= j * len(a)):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


def _label(level: float) -> str:
    return "unchanged" if level == 0 else f"+{level:g}%"


def _env(runs: list[dict]) -> dict:
    return runs[0]["env"] if runs else {}


def _harness(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise SystemExit(f"harness {args[0]} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


if __name__ == "__main__":
    sys.exit(main())
