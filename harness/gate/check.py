"""The CI regression gate: record how fast a kernel suite runs, then fail CI when a kernel slows.

    python -m harness baseline suites/kernels-ci.yaml --out results/baselines/kernels-cpu.json
    python -m harness check suites/kernels-ci.yaml --baseline results/baselines/kernels-cpu.json
    python -m harness check suites/kernels-ci.yaml --against main          # A/B: main's kernels vs this tree's
    python -m harness.gate.study --calibrate suites/kernels-ci.yaml          # detection curve, false alarms

Two ways to get the other side of the comparison:

  A/B      `--against REV`, or `--baseline FILE` (its recorded commit is the REV): REV's kernels and
           this tree's measured side by side on this machine, in pairs timed back to back
           (harness.gate.ab). The default, because it is the one way whose false alarms held on
           every machine measured (docs/gate.md).
  stored   `--baseline FILE --stored`, or a baseline whose commit cannot be measured again (recorded
           from a dirty tree or outside git): the file's numbers, against this tree measured now in
           this process (harness.gate.measure); only on the machine that recorded them (speed
           fingerprint: CPU vendor/model/flags, torch build, CPU count; harness.gate.machine), else
           exit 2. Cases whose kernel code, settings or presence changed are not comparable there.

How a case is judged (the same in both modes), from its per-round normalised samples:

  regressed       slower than the other side by more than the threshold AND significant, p < ALPHA
                  (0.01): stored, the medians of the normalised samples and a one-sided Mann-Whitney
                  U test; A/B, the median of the per-round ratios and a one-sided sign test
  faster          the mirror image (information only)
  ambiguous       beyond the threshold (either way) but not significant: more rounds settle it
  ok              within the threshold
  not comparable  not measured on both sides (a case missing from the baseline or REV; a capped
                  case; in stored mode another code hash, dtype or thread count): neither a pass
                  nor a regression
  failed          the variant's output is wrong, it raised, or its times are not finite positive
                  numbers: it is never compared as fast

Both conditions are needed: the threshold alone fires on noise that happens to be large (a
median of 10 rounds on a loaded machine can move by 25%), the test alone fires on real but tiny,
systematic differences between two processes (a 3-5% shift is "significant" with 10 rounds).
Mann-Whitney needs no normality (timings are skewed) and uses the measured spread of both sides;
with 10 rounds each its smallest possible p is 9e-5 (scipy's normal approximation; with 8 rounds or
fewer on one side its exact distribution, 1/C(n + m, n)). A/B pairs the rounds: each case's two sides
are timed back to back (~10 ms apart, on one CPU), so the machine's drift, which on a shared VM
moves every speed by 20-100% within a second and which a calibration timed a second away cannot
follow, cancels in the per-round ratio; the sign test needs 22 of 30 pairs slower. The default
threshold is per mode (DEFAULT_THRESHOLD): side by side on one machine a much smaller change is
real than between a stored run and a later one (see the detection curve in docs/gate.md).

A gate that can always say no: with too few rounds even a case 1000x slower in every round cannot
reach p < ALPHA (the sign test's best over n pairs is 0.5^n; Mann-Whitney's over n rounds against
the baseline's m, 1/C(n + m, n)), so it would only ever be ambiguous and the check would pass.
Such a round count is refused before anything is timed (check_attainable, computed from the test
itself: min_rounds): at least 7 pairs side by side, and against stored numbers 3 with a baseline
of 7 rounds or more, 4 with 5 or 6, 5 with 4, 7 with 3. No extra rule fails a case "far beyond
the threshold" whatever its p: above the minimum a slowdown seen in every round is significant,
and such a rule would be a second, untested false-alarm path on a machine whose speed moves 2x.

Exit codes: 0 every compared case passed; 1 a case regressed or failed, or no case was compared at
all (a gate that compared nothing has checked nothing); 2 bad input (suite, flags, a round count
that could never be significant, a damaged baseline file, another device class, a REV that is not
a commit, an --out it cannot write), before anything is timed; 130/143/129 interrupted by Ctrl-C,
SIGTERM or SIGHUP (one line; nothing is written half).
`check` writes <out>/<suite>-check/<UTC time>-<id>/check.md and check.json.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from harness.core.errors import UserError
from harness.gate.ab import PROCESS_PAIRS, measure_revision
from harness.gate.measure import MAX_ROUNDS, MIN_ROUNDS, ROUNDS, SLOWDOWN_ENV, check_rounds, kernel_suite
from harness.gate.report import us

ROUNDS_AB = 30  # pairs of half-budget times (harness.gate.ab.SHARE): the time of 15 full rounds; the sign test
#             then needs 22 of 30 pairs slower for p < 0.01

DEFAULT_THRESHOLD = {"stored": 0.25, "ab": 0.05}
ALPHA = 0.01
EXIT_REGRESSED = 1
VERDICTS = ("ok", "faster", "ambiguous", "regressed", "failed", "not comparable")
COMPARED = ("ok", "faster", "ambiguous", "regressed")


def run_check(suite_path: Path, out_root: Path, device: str, *, baseline_path: Path | None = None,
              against: str | None = None, threshold: float | None = None, rounds: int | None = None,
              stored: bool = False) -> int:
    """`harness check`: every input is checked first (exit 2), then the suite is measured (stored
    or A/B mode), compared, printed and written; exit 1 if a case regressed or failed, or none
    was compared."""
    from harness.run import interrupt, rundir
    from harness.gate.measure import injected_slowdown
    from harness.core.io import atomic_write_json, atomic_write_text

    if threshold is not None and not 0 < threshold < 10:
        raise UserError(f"--threshold {threshold}: a fraction > 0, e.g. 0.25 for 25% slower")
    if rounds is not None:
        check_rounds(rounds)
    if (baseline_path is None) == (against is None):
        raise UserError("check: give --baseline FILE (its commit measured side by side; with --stored, its "
                        "numbers) or --against REV (side by side), one of the two")
    if stored and baseline_path is None:
        raise UserError("--stored compares with a baseline file's numbers: give --baseline FILE, not --against")
    rundir.check_out_root(out_root)  # a results root it can write, before an hour of timing
    suite = kernel_suite(suite_path)
    slowdown = injected_slowdown()
    base, flag, how = None, "--against", None
    if baseline_path is not None:
        base, against, how = _stored_or_commit(suite, suite_path, baseline_path, device, stored)
        flag = f"{baseline_path}: its commit"
    mode = "stored" if against is None else "ab"
    rounds = rounds or (ROUNDS_AB if mode == "ab" else ROUNDS)
    check_attainable(rounds, base["method"]["rounds"] if mode == "stored" else None, baseline_path)
    if how:
        print(how, flush=True)
    if mode == "ab":
        base, current = measure_revision(suite, device, against, flag, rounds, slowdown)
    else:
        from harness.gate.measure import measure_suite

        current = measure_suite(suite, device, rounds)
    threshold = DEFAULT_THRESHOLD[mode] if threshold is None else threshold
    rows, gone = compare(base, current, threshold, mode)
    counts = _counts(rows)
    run = rundir.new(out_root, f"{suite.name}-check")
    from harness.gate.report import markdown

    try:
        with interrupt.deferred():  # check.md and check.json both, or neither
            atomic_write_text(run.path / "check.md", markdown(rows, gone, base, current, baseline_path, threshold,
                                                              mode, counts, ALPHA))
            atomic_write_json(run.path / "check.json", {
                "mode": mode, "threshold": threshold, "alpha": ALPHA,
                "baseline": baseline_path and str(baseline_path),
                "against": base["env"].get("git_commit") if mode == "ab" else None, "summary": counts,
                "cases": rows, "not_run": gone, "reference": base if mode == "ab" else None, "current": current})
    except KeyboardInterrupt as e:
        e.written = run.path  # the command's interruption line names it
        raise
    for row in rows:
        print(line(row))
    if slowdown:
        print(f"NOTE: {SLOWDOWN_ENV}={slowdown} injected a slowdown (calibration study)")
    compared = sum(counts[v] for v in COMPARED)
    side = "stored baseline" if mode == "stored" else f"{base['env']['git_commit'][:12]} side by side"
    print(f"{len(rows)} cases: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
          + f" (against {side}, threshold {threshold:.0%}, alpha {ALPHA}, {current['wall_s']:.1f} s) -> "
          f"{run.path / 'check.md'}")
    if counts["ambiguous"]:
        print(f"{counts['ambiguous']} ambiguous: beyond the threshold but not significant in "
              f"{current['method']['rounds']} rounds" + (" (or not in every pair of processes)" if mode == "ab" else "")
              + "; more rounds settle it: --rounds "
              f"{min(3 * current['method']['rounds'], MAX_ROUNDS)}")
    if not compared:
        print("FAILED: no case was compared, so this check checked nothing (every case was not comparable "
              "or failed; see the reasons above)")
    return EXIT_REGRESSED if counts["regressed"] or counts["failed"] or not compared else 0


def _stored_or_commit(suite, suite_path: Path, baseline_path: Path, device: str,
                      stored: bool) -> tuple[dict, str | None, str]:
    """The baseline document; the commit to measure side by side with this tree: its own,
    wherever it can be measured again (a clean commit of this repository), unless `stored` asks for
    its numbers; None to compare with its stored numbers, which only the machine that recorded them
    may do; and the line that says which way, and why (printed once the rounds are checked)."""
    from harness.gate.baseline_file import differences, load_baseline
    from harness.gate.measure import device_class, speed_fingerprint

    target = baseline_path / f"{suite.name}-{device_class(device)}.json" if baseline_path.is_dir() else baseline_path
    hint = f"python -m harness baseline {suite_path} --out {target}"
    base = load_baseline(baseline_path, hint)
    if base["suite"] != suite.name:
        raise UserError(f"{baseline_path}: a baseline of suite {base['suite']!r}, not {suite.name!r}; give "
                        f"that suite's baseline, or record one: {hint}")
    if base["device_class"] != device_class(device):
        raise UserError(f"{baseline_path}: recorded on device class {base['device_class']!r}, this check runs on "
                        f"{device_class(device)!r}; pass --device to match it, or record a baseline for this "
                        f"class: python -m harness baseline {suite_path} --device {device} "
                        f"--out results/baselines/{suite.name}-{device_class(device)}.json")
    machine = differences(base["machine"], speed_fingerprint(device))
    blocked = {}
    for key, meta in _current_cases(suite).items():
        why = _stored_blocker(base["cases"].get(key), meta)
        if why:
            blocked.setdefault(why.split(" (")[0], []).append(key)
    reasons = (["recorded on another machine: " + "; ".join(machine)] if machine else []) + [
        f"{why}: {', '.join(keys[:3])}{f' and {len(keys) - 3} more' if len(keys) > 3 else ''}"
        for why, keys in blocked.items()]
    commit, dirty = base["env"].get("git_commit"), base["env"].get("git_dirty")
    measurable = commit is not None and dirty is False
    if reasons:
        print(f"{baseline_path}: its stored numbers cannot judge every case here:\n  " + "\n  ".join(reasons))
    if machine and (stored or not measurable):
        raise UserError(f"{baseline_path}: its numbers were recorded on another machine and apply only there"
                        + ("; drop --stored to measure its commit side by side with this tree" if measurable else
                           f", and it was recorded from {'a dirty tree' if commit else 'no git commit'}, whose code "
                           f"cannot be measured again; record a baseline here from a clean tree ({hint}), or "
                           f"compare with --against REV"))
    if stored or not measurable:
        return base, None, ("comparing with its stored numbers (recorded on this machine"
                            + ("" if stored else f"; its commit cannot be measured again: recorded "
                               f"{'from a dirty tree' if commit else 'outside git'}")
                            + ("); the cases they cannot judge are not comparable" if reasons else ")"))
    return base, commit, (f"measuring its commit {commit[:12]} side by side with this tree (A/B; --stored compares "
                          f"with its stored numbers instead, on the machine that recorded them)")


def _current_cases(suite) -> dict:
    """This tree's code hash, dtype and threads of every case of the suite, without timing."""
    import torch

    from harness.kernels import KERNELS
    from harness.gate.measure import plan
    from harness.run.rundir import task_key

    return {task_key(e["id"], name, point["label"]): {
        "code_hash": KERNELS.get(e["kernel"]).variants[name].code_hash, "dtype": e["dtype"],
        "threads": e["threads"] or torch.get_num_threads()}
        for e in plan(suite) for point in e["cases"] for name in e["variants"]}


def _stored_blocker(old: dict | None, cur: dict) -> str | None:
    """Why stored numbers cannot judge a case measured now (None: they can)."""
    if old is None:
        return "not in the baseline"
    if old["code_hash"] != cur["code_hash"]:
        return f"kernel code changed since the baseline (code hash {old['code_hash']} -> {cur['code_hash']})"
    if (old["dtype"], old["threads"]) != (cur["dtype"], cur["threads"]):
        return (f"settings changed since the baseline (dtype, threads {old['dtype']}, {old['threads']} -> "
                f"{cur['dtype']}, {cur['threads']})")
    return None


def judge(base: Sequence[float], current: Sequence[float], threshold: float = DEFAULT_THRESHOLD["stored"],
          alpha: float = ALPHA, paired: bool = False, groups: int = 1) -> tuple[float, float, str]:
    """(ratio current/base, p-value, verdict) for two sets of per-round samples.

    Unpaired (stored mode, normalised samples): the ratio of the medians and a one-sided
    Mann-Whitney U test. Paired (A/B, raw samples, the two sides of round r timed back to back):
    the median of the per-round ratios and a one-sided sign test of them (are more rounds slower
    than faster?), the test of exactly that median, and robust to the rounds a sudden change of
    the machine's speed between the two halves of a pair throws far off. The rule is the same:
    beyond the threshold AND significant.

    Paired samples from `groups` pairs of worker processes (harness.gate.ab.PROCESS_PAIRS, the rounds
    in that many consecutive blocks) must also agree: a verdict beyond the threshold needs every
    block's median ratio beyond it in the same direction, else it is ambiguous. A real change of
    the code moves every pair of processes alike; a process's own luck (where its tensors and code
    landed, a few % for small kernels) moves one, and with 30 pairs that alone can be
    "significant" (found by CI: an unchanged case judged 5 % slower, p 0.0007)."""
    ratios = [c / b for b, c in zip(base, current)] if paired else None
    ratio = statistics.median(ratios) if paired else statistics.median(current) / statistics.median(base)
    blocks = [statistics.median(ratios[n * len(ratios) // groups:(n + 1) * len(ratios) // groups])
              for n in range(groups)] if paired and groups > 1 and len(ratios) >= groups else [ratio]
    if ratio > 1 + threshold:
        p = p_value(base, current, paired, "greater")
        return ratio, p, "regressed" if p < alpha and min(blocks) > 1 + threshold else "ambiguous"
    if ratio < 1 / (1 + threshold):
        p = p_value(base, current, paired, "less")
        return ratio, p, "faster" if p < alpha and max(blocks) < 1 / (1 + threshold) else "ambiguous"
    return ratio, p_value(base, current, paired, "greater"), "ok"


def p_value(base: Sequence[float], current: Sequence[float], paired: bool, alternative: str) -> float:
    """The one-sided p-value `judge` uses: paired, a sign test of the per-round ratios (rounds with
    a ratio of exactly 1 carry no sign and are left out); unpaired, Mann-Whitney U (scipy's exact
    distribution for small samples without ties, else the normal approximation)."""
    from scipy.stats import binomtest, mannwhitneyu

    if paired:
        ratios = [c / b for b, c in zip(base, current)]
        slower, differ = sum(r > 1 for r in ratios), sum(r != 1 for r in ratios)
        return float(binomtest(slower, differ, 0.5, alternative=alternative).pvalue) if differ else 1.0
    return float(mannwhitneyu(current, base, alternative=alternative).pvalue)


def smallest_p(rounds: int, baseline_rounds: int | None = None) -> float:
    """The smallest p-value `judge` can reach with these sample sizes, whatever the slowdown: every
    round of the current side slower than its pair (side by side, baseline_rounds None: 0.5^rounds),
    or than every round of the baseline (stored: 1/C(rounds + baseline_rounds, rounds) where scipy
    uses the exact distribution, else what its normal approximation gives)."""
    if baseline_rounds is None:
        return p_value([1.0] * rounds, [2.0] * rounds, True, "greater")
    base = [1 + i / (2 * baseline_rounds) for i in range(baseline_rounds)]  # distinct: no ties
    return p_value(base, [2.0 + i for i in range(rounds)], False, "greater")


def min_rounds(baseline_rounds: int | None = None, alpha: float = ALPHA) -> int:
    """The fewest rounds with which a slowdown can be significant (smallest_p < alpha); side by
    side also one round per pair of processes at least (each pair's own median is asked)."""
    floor = MIN_ROUNDS if baseline_rounds is not None else max(MIN_ROUNDS, PROCESS_PAIRS)
    return next((n for n in range(floor, MAX_ROUNDS + 1) if smallest_p(n, baseline_rounds) < alpha), MAX_ROUNDS + 1)


def check_attainable(rounds: int, baseline_rounds: int | None, baseline_path: Path | None = None) -> None:
    """Refuse a round count with which the check could never fail (exit 2, before anything is
    timed): below min_rounds even a case 1000x slower in every round would only be ambiguous."""
    need = min_rounds(baseline_rounds)
    if rounds >= need:
        return
    p = smallest_p(rounds, baseline_rounds)
    if baseline_rounds is None:
        why = (f"side by side, the sign test over {rounds} pairs reaches p = {p:.3g} at best (every pair slower: "
               f"0.5^{rounds})")
        default = ROUNDS_AB
    else:
        why = (f"against the {baseline_rounds} rounds of {baseline_path or 'the baseline'}, Mann-Whitney U reaches "
               f"p = {p:.3g} at best (every round slower than every round of the baseline)")
        default = ROUNDS
    raise UserError(f"--rounds {rounds}: {why}, never below alpha {ALPHA}, so no slowdown could fail the check; "
                    f"give --rounds {need} or more (default {default})"
                    + ("" if baseline_rounds is None else ", or record the baseline with more rounds"))


def compare(base: dict, current: dict, threshold: float, mode: str = "stored") -> tuple[list[dict], list[str]]:
    """One row per case of the current run; and the other side's cases this run did not have.
    In A/B mode a changed code hash is the point of the comparison (noted, still compared)."""
    rows = []
    pairs = current.get("method", {}).get("process_pairs", 1)  # A/B: how many pairs of workers measured it
    for key, cur in current["cases"].items():
        old = base["cases"].get(key)
        row = {"case": key, "variant": cur["variant"], "verdict": "not comparable", "reason": None, "ratio": None,
               "p_value": None, "baseline_s": old and old.get("median_s"), "current_s": cur.get("median_s"),
               "baseline_speedup": old and old.get("speedup"), "current_speedup": cur.get("speedup"),
               "speedup_vs": cur["baseline_variant"]}
        blocker = _stored_blocker(old, cur) if mode == "stored" else None
        if cur["status"] == "failed":
            row.update(verdict="failed", reason=cur["error"])
        elif cur["status"] == "skipped" and old is not None:
            row["reason"] = f"{old['status']} at {base['env']['git_commit'][:12]}: {old['error']}"
        elif cur["status"] != "ok":
            row["reason"] = cur["error"] or cur["status"]
        elif old is None:
            row["reason"] = "not in the baseline" if mode == "stored" else "not measured on the other side"
        elif old["status"] != "ok":
            row["reason"] = (f"{old['status']} in the baseline" if mode == "stored" else
                             f"{old['status']} at {base['env']['git_commit'][:12]}: {old['error']}")
        elif blocker:
            row["reason"] = blocker
        else:
            samples = "normalised" if mode == "stored" else "best_s"  # A/B: raw, paired by round
            row["ratio"], row["p_value"], row["verdict"] = judge(old[samples], cur[samples], threshold,
                                                                 paired=mode == "ab", groups=pairs)
            if old["code_hash"] != cur["code_hash"]:
                row["reason"] = f"code changed ({old['code_hash']} -> {cur['code_hash']})"
        rows.append(row)
    return rows, [k for k in base["cases"] if k not in current["cases"]]


def line(row: dict) -> str:
    """One console line: verdict, case, other side -> current, ratio, p (or why not compared)."""
    head = f"{row['verdict']:<14} {row['case']:<58}"
    if row["ratio"] is None:
        return f"{head} {row['reason']}"
    note = f"  {row['reason']}" if row["reason"] else ""
    return (f"{head} {us(row['baseline_s']):>10} -> {us(row['current_s']):>10}  ratio {row['ratio']:5.2f}  "
            f"p {row['p_value']:.2g}{note}")


def _counts(rows: list[dict]) -> dict:
    counts = dict.fromkeys(VERDICTS, 0)
    for r in rows:
        counts[r["verdict"]] += 1
    return counts
