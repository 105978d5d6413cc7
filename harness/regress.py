"""The CI regression gate: record how fast a kernel suite runs, then fail CI when a kernel slows.

    python -m harness baseline suites/kernels-ci.yaml --out results/baselines/kernels-cpu.json
    python -m harness check suites/kernels-ci.yaml --baseline results/baselines/kernels-cpu.json [--threshold 0.25]
    python -m harness.regress --calibrate suites/kernels-ci.yaml -n 10 [--load 2]   # false alarms, detection

How a case is measured (ROUNDS interleaved rounds, normalised by a calibration workload timed in
the same process) is harness.regress_measure. How it is judged, per case:

  regressed       its normalised median is slower than the baseline's by more than the threshold
                  (default 25%) AND a one-sided Mann-Whitney U test of its per-round normalised
                  samples against the baseline's gives p < ALPHA (0.01)
  faster          the mirror image (information only)
  ok              neither
  not comparable  not in the baseline, or its kernel's code hash, dtype or thread count differ from
                  the baseline's, or it was capped: it is neither a pass nor a regression
  failed          the variant's output is wrong or it raised: it is never compared as fast

Both conditions are needed: the threshold alone fires on noise that happens to be large (a
median of 10 rounds on a loaded machine can move by 25%), the test alone fires on real but tiny,
systematic differences between two processes (a 3-5% shift is "significant" with 10 rounds).
Mann-Whitney needs no normality (timings are skewed) and uses the measured spread of both sides;
with 10 rounds each its smallest possible p is 5e-6, so 0.01 leaves room to detect a slowdown
even when a few rounds are disturbed. Speedups between variants of one experiment (measured in
the same rounds, so without a normaliser) are shown beside each case, but are no verdict: a
faster baseline variant lowers every other variant's speedup.

Exit codes: 0 no case regressed or failed; 1 some did; 2 bad input (suite, baseline file, its
format version, device class), before anything is timed.

The baseline file is versioned JSON (FORMAT_VERSION): the environment it was recorded in, the
method (rounds, calibration id), the calibration's samples, and per case its code hash, settings,
statistics and every raw sample. `check` writes <out>/<suite>-check/<UTC time>-<id>/check.md and
check.json (the comparison and the new measurement, itself a valid baseline document).
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Sequence

from harness.errors import UserError
from harness.regress_measure import CALIBRATION_ID, FORMAT, FORMAT_VERSION, SLOWDOWN_ENV

DEFAULT_THRESHOLD = 0.25
ALPHA = 0.01
CASE_KEYS = ("code_hash", "dtype", "threads", "status")
EXIT_REGRESSED = 1


def record_baseline(suite_path: Path, out: Path, device: str) -> int:
    """`harness baseline`: measure the suite and write the baseline file (not when a case failed)."""
    from harness.regress_measure import injected_slowdown, measure_suite

    suite = _kernel_suite(suite_path)
    if injected_slowdown():
        raise UserError(f"{SLOWDOWN_ENV} is set: a baseline must be recorded on unchanged code; unset it")
    doc = measure_suite(suite, device)
    for key, case in doc["cases"].items():
        note = case["error"] or f"{_us(case['median_s'])}  normalised {case['normalised_median']:.4g}"
        print(f"{case['status']:<8} {key:<58} {note}")
    failed = [k for k, c in doc["cases"].items() if c["status"] == "failed"]
    if failed:
        print(f"{len(failed)} failed: no baseline written (a wrong or raising variant has no speed to keep)")
        return EXIT_REGRESSED
    from harness.results import atomic_write_text

    atomic_write_text(out, dumps(doc))
    print(f"baseline of {len(doc['cases'])} cases ({doc['device_class']}, {doc['wall_s']:.1f} s) -> {out}")
    return 0


def run_check(suite_path: Path, baseline_path: Path, threshold: float, out_root: Path, device: str) -> int:
    """`harness check`: every input is checked first (exit 2), then the suite is measured, compared,
    printed and written; exit 1 if a case regressed or failed."""
    from harness import rundir
    from harness.regress_measure import device_class, measure_suite
    from harness.results import atomic_write_json, atomic_write_text

    if not 0 < threshold < 10:
        raise UserError(f"--threshold {threshold}: a fraction > 0, e.g. 0.25 for 25% slower")
    suite = _kernel_suite(suite_path)
    base = load_baseline(baseline_path, suite_path)
    if base["suite"] != suite.name:
        raise UserError(f"{baseline_path}: a baseline of suite {base['suite']!r}, not {suite.name!r}; give "
                        f"that suite's baseline, or record one: {_record_hint(suite_path, baseline_path)}")
    if base["device_class"] != device_class(device):
        raise UserError(f"{baseline_path}: recorded on device class {base['device_class']!r}, this check runs on "
                        f"{device_class(device)!r}; pass --device to match it, or record a baseline for this "
                        f"class: python -m harness baseline {suite_path} --device {device} "
                        f"--out results/baselines/{suite.name}-{device_class(device)}.json")
    current = measure_suite(suite, device)
    rows, gone = compare(base, current, threshold)
    run = rundir.new(out_root, f"{suite.name}-check")
    text = markdown(rows, gone, base, current, baseline_path, threshold)
    atomic_write_text(run.path / "check.md", text)
    atomic_write_json(run.path / "check.json", {"threshold": threshold, "alpha": ALPHA, "baseline": str(baseline_path),
                                                "summary": _counts(rows), "cases": rows, "not_run": gone,
                                                "current": current})
    for row in rows:
        print(line(row))
    if current["method"]["injected_slowdown"]:
        print(f"NOTE: {SLOWDOWN_ENV}={current['method']['injected_slowdown']} injected a slowdown (calibration study)")
    counts = _counts(rows)
    print(f"{len(rows)} cases: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
          + f" (threshold {threshold:.0%}, alpha {ALPHA}, {current['wall_s']:.1f} s) -> {run.path / 'check.md'}")
    return EXIT_REGRESSED if counts["regressed"] or counts["failed"] else 0


def judge(base: Sequence[float], current: Sequence[float], threshold: float = DEFAULT_THRESHOLD,
          alpha: float = ALPHA) -> tuple[float, float, str]:
    """(ratio of medians current/baseline, p-value, verdict) for two sets of normalised samples."""
    from scipy.stats import mannwhitneyu

    ratio = statistics.median(current) / statistics.median(base)
    p_slower = float(mannwhitneyu(current, base, alternative="greater").pvalue)
    if ratio > 1 + threshold and p_slower < alpha:
        return ratio, p_slower, "regressed"
    p_faster = float(mannwhitneyu(current, base, alternative="less").pvalue)
    if ratio < 1 / (1 + threshold) and p_faster < alpha:
        return ratio, p_faster, "faster"
    return ratio, p_slower, "ok"


def compare(base: dict, current: dict, threshold: float) -> tuple[list[dict], list[str]]:
    """One row per case of the current run; and the baseline's cases this run did not have."""
    rows = []
    for key, cur in current["cases"].items():
        old = base["cases"].get(key)
        row = {"case": key, "variant": cur["variant"], "verdict": "not comparable", "reason": None, "ratio": None, "p_value": None,
               "baseline_s": old and old.get("median_s"), "current_s": cur.get("median_s"),
               "baseline_speedup": old and old.get("speedup"), "current_speedup": cur.get("speedup"),
               "speedup_vs": cur["baseline_variant"]}
        if cur["status"] == "failed":
            row.update(verdict="failed", reason=cur["error"])
        elif cur["status"] != "ok":
            row["reason"] = cur["error"] or cur["status"]
        elif old is None:
            row["reason"] = "not in the baseline"
        elif old["status"] != "ok":
            row["reason"] = f"{old['status']} in the baseline"
        elif old["code_hash"] != cur["code_hash"]:
            row["reason"] = f"kernel code changed (code hash {old['code_hash']} -> {cur['code_hash']})"
        elif (old["dtype"], old["threads"]) != (cur["dtype"], cur["threads"]):
            row["reason"] = f"settings changed (dtype, threads {old['dtype']}, {old['threads']} -> {cur['dtype']}, {cur['threads']})"
        else:
            row["ratio"], row["p_value"], row["verdict"] = judge(old["normalised"], cur["normalised"], threshold)
        rows.append(row)
    return rows, [k for k in base["cases"] if k not in current["cases"]]


def load_baseline(path: Path, suite_path: Path) -> dict:
    """Read and validate a baseline file; every problem is a UserError that says what to do."""
    hint = _record_hint(suite_path, path)
    if not path.is_file():
        raise UserError(f"{path}: no such baseline file; record one: {hint}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a baseline file (not readable JSON: {e}); record one: {hint}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path}: not a harness baseline file (no \"format\": \"{FORMAT}\"); record one: {hint}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: baseline format version {doc.get('format_version')}, this harness reads "
                        f"{FORMAT_VERSION}; re-record it with this harness: {hint}")
    if (doc.get("method") or {}).get("calibration") != CALIBRATION_ID:
        raise UserError(f"{path}: normalised by calibration {(doc.get('method') or {}).get('calibration')!r}, this "
                        f"harness uses {CALIBRATION_ID!r}; re-record it: {hint}")
    problems = [f"missing {k!r}" for k in ("suite", "device_class", "cases") if k not in doc]
    for key, case in (doc.get("cases") or {}).items():
        need = CASE_KEYS + (("normalised", "median_s") if case.get("status") == "ok" else ())
        problems += [f"cases[{key!r}]: missing {k!r}" for k in need if k not in case]
    if problems:
        raise UserError(f"{path}: damaged baseline file ({'; '.join(problems[:3])}); re-record it: {hint}")
    return doc


def line(row: dict) -> str:
    """One console line: verdict, case, baseline -> current, ratio, p (or why not compared)."""
    head = f"{row['verdict']:<14} {row['case']:<58}"
    if row["ratio"] is None:
        return f"{head} {row['reason']}"
    return (f"{head} {_us(row['baseline_s']):>10} -> {_us(row['current_s']):>10}  ratio {row['ratio']:5.2f}  "
            f"p {row['p_value']:.2g}")


def markdown(rows, gone, base, current, baseline_path, threshold) -> str:
    env_b, env_c = base.get("env", {}), current["env"]
    cal_b = {t: statistics.median(c["best_s"]) for t, c in base.get("calibration", {}).items()}
    cal_c = {t: statistics.median(c["best_s"]) for t, c in current["calibration"].items()}
    out = [f"# check: {current['suite']} against {baseline_path}", "",
           f"{len(rows)} cases: " + ", ".join(f"{n} {v}" for v, n in _counts(rows).items() if n)
           + f". Regressed = normalised median > {1 + threshold:.2f}x the baseline's AND one-sided "
           f"Mann-Whitney U p < {ALPHA} over {current['method']['rounds']} rounds.", "",
           "| | baseline | this run |", "| --- | --- | --- |"]
    for label, key in (("recorded", "created_at"), ("device class", "device_class")):
        out.append(f"| {label} | {base.get(key)} | {current.get(key)} |")
    for key in ("host", "cpu_model", "gpu_name", "torch", "git_describe"):
        out.append(f"| {key} | {env_b.get(key)} | {env_c.get(key)} |")
    for t in sorted(set(cal_b) | set(cal_c)):
        out.append(f"| calibration, {t} thread(s) | {_us(cal_b.get(t))} | {_us(cal_c.get(t))} |")
    if current["method"]["injected_slowdown"]:
        out.append(f"| injected slowdown | | x{current['method']['injected_slowdown']} ({SLOWDOWN_ENV}) |")
    out += ["", "Times: median over rounds of each round's best block, raw (the ratio is of normalised times).",
            "", "| verdict | case | baseline | current | ratio | p | speedup (baseline -> current) | note |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else ""
        p = f"{r['p_value']:.2g}" if r["p_value"] is not None else ""
        speed = "" if r["current_speedup"] is None or r["variant"] == r["speedup_vs"] else (
            f"vs {r['speedup_vs']}: {_x(r['baseline_speedup'])} -> {_x(r['current_speedup'])}")
        out.append(f"| {r['verdict']} | `{r['case']}` | {_us(r['baseline_s'])} | {_us(r['current_s'])} | {ratio} "
                   f"| {p} | {speed} | {r['reason'] or ''} |")
    if gone:
        out += ["", "In the baseline but not in this run: " + ", ".join(f"`{k}`" for k in gone)]
    return "\n".join(out) + "\n"


def dumps(doc: dict) -> str:
    """JSON with each list of numbers on one line: a baseline holds thousands of samples."""
    text = json.dumps(doc, indent=2)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n"


def _kernel_suite(suite_path: Path):
    from harness.suite import load_suite

    suite = load_suite(suite_path)
    others = [f"{e.id} ({e.spec.kind})" for e in suite.experiments if e.spec.kind != "kernel"]
    if others:
        raise UserError(f"{suite_path}: the regression gate times kernel experiments only; remove "
                        f"{', '.join(others)} or use another suite (e.g. suites/kernels-ci.yaml)")
    return suite


def _record_hint(suite_path: Path, baseline_path: Path) -> str:
    return f"python -m harness baseline {suite_path} --out {baseline_path}"


def _counts(rows: list[dict]) -> dict:
    counts = dict.fromkeys(("ok", "faster", "regressed", "failed", "not comparable"), 0)
    for r in rows:
        counts[r["verdict"]] += 1
    return counts


def _us(seconds) -> str:
    return "" if seconds is None else f"{seconds * 1e6:.1f} us"


def _x(speedup) -> str:
    return "-" if speedup is None else f"{speedup:.2f}x"


if __name__ == "__main__":
    from harness.regress_study import main

    sys.exit(main())
