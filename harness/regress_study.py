"""How often does `harness check` cry wolf, and how often does it catch a real slowdown?

    python -m harness.regress --calibrate suites/kernels-ci.yaml -n 10             # a quiet machine
    python -m harness.regress --calibrate suites/kernels-ci.yaml -n 10 --load 2    # 2 busy processes too

Records a baseline first (unless --baseline FILE is given; before any load starts), then runs
`python -m harness check` 2N times, each in a fresh process, alternating unchanged code with every
kernel call made `--slowdown` times slower (HARNESS_REGRESS_SLOWDOWN, harness.regress_measure).
`--load K` keeps K busy processes running meanwhile (`spin`: a Python busy loop; `matmul`: a
one-thread 512x512 matmul loop, which also competes for caches and memory bandwidth). It prints:

  false alarms  unchanged runs that exited 1, and cases judged regressed of all unchanged cases
  detection     slowed runs that exited 1, and cases judged regressed of all slowed cases
  margins       the largest ratio of an unchanged case and the smallest of a slowed one

and exits 1 when the aim (no false alarm, every slowed case caught) is missed. The runs' check
directories and a study.json stay under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOADS = {"spin": "while True: pass",
         "matmul": "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True: a @ a"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.regress", description=__doc__.split("\n\n")[0])
    p.add_argument("--calibrate", action="store_true", required=True, help="run the false-alarm / detection study")
    p.add_argument("suite", type=Path)
    p.add_argument("-n", "--runs", type=int, default=10, help="checks per condition (default 10)")
    p.add_argument("--slowdown", type=float, default=1.5, help="injected slowdown factor (default 1.5)")
    p.add_argument("--threshold", type=float, default=0.25)
    p.add_argument("--baseline", type=Path, help="baseline file (default: record one first)")
    p.add_argument("--load", type=int, default=0, metavar="K", help="busy processes to run meanwhile")
    p.add_argument("--load-kind", choices=sorted(LOADS), default="spin")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", type=Path, help="where the checks write (default: a new temporary directory)")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="regress-study-"))
    baseline = args.baseline or out / "baseline.json"
    if args.baseline is None:
        _harness("baseline", str(args.suite), "--out", str(baseline), "--device", args.device, check=True)
    loads = [subprocess.Popen([sys.executable, "-c", LOADS[args.load_kind]]) for _ in range(args.load)]
    try:
        runs = []
        for i in range(2 * args.runs):
            slowed = i % 2 == 1  # alternate, so a drifting machine affects both conditions alike
            runs.append(_one_check(args, baseline, out / f"run-{i:02d}", slowed))
            r = runs[-1]
            print(f"run {i:2d} {'slowed' if slowed else 'unchanged':<9} exit {r['exit']}  "
                  f"{r['regressed']}/{r['cases']} regressed  ratios {r['min_ratio']:.2f}-{r['max_ratio']:.2f}  "
                  f"{r['wall_s']:.1f} s", flush=True)
    finally:
        for proc in loads:
            proc.kill()
            proc.wait()
    summary = _summary(runs, args)
    (out / "study.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    for k, v in summary.items():
        print(f"{k:<24} {v}")
    print(f"-> {out / 'study.json'}")
    return 0 if summary["aim_met"] else 1


def _one_check(args, baseline: Path, out: Path, slowed: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_REGRESS_SLOWDOWN"}
    if slowed:
        env["HARNESS_REGRESS_SLOWDOWN"] = str(args.slowdown)
    t0 = time.perf_counter()
    proc = _harness("check", str(args.suite), "--baseline", str(baseline), "--threshold", str(args.threshold),
                    "--out", str(out), "--device", args.device, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"check exited {proc.returncode}:\n{proc.stderr}")
    (check,) = out.glob("*/*/check.json")
    rows = json.loads(check.read_text())["cases"]
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    return {"slowed": slowed, "exit": proc.returncode, "cases": len(rows), "wall_s": wall,
            "regressed": sum(r["verdict"] == "regressed" for r in rows),
            "compared": len(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios), "check": str(check)}


def _summary(runs: list[dict], args) -> dict:
    quiet = [r for r in runs if not r["slowed"]]
    slow = [r for r in runs if r["slowed"]]
    false_runs, caught_runs = sum(r["exit"] == 1 for r in quiet), sum(r["exit"] == 1 for r in slow)
    false_cases, caught_cases = sum(r["regressed"] for r in quiet), sum(r["regressed"] for r in slow)
    n_quiet, n_slow = sum(r["compared"] for r in quiet), sum(r["compared"] for r in slow)
    return {"condition": f"load {args.load} x {args.load_kind}" if args.load else "quiet",
            "threshold": args.threshold, "slowdown": args.slowdown,
            "false_alarm_runs": f"{false_runs}/{len(quiet)}", "false_alarm_cases": f"{false_cases}/{n_quiet}",
            "detected_runs": f"{caught_runs}/{len(slow)}", "detected_cases": f"{caught_cases}/{n_slow}",
            "max_ratio_unchanged": round(max(r["max_ratio"] for r in quiet), 3),
            "min_ratio_slowed": round(min(r["min_ratio"] for r in slow), 3),
            "check_wall_s_median": round(sorted(r["wall_s"] for r in runs)[len(runs) // 2], 1),
            "aim_met": false_cases == 0 and caught_cases == n_slow}


def _harness(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise SystemExit(f"harness {args[0]} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc
