"""Contracts of the CI regression gate (harness.gate.check, harness.gate.measure, harness.gate.baseline_file):
the verdicts on synthetic samples, what is not comparable, the baseline file's checks (exit 2 with
what to do), a wrong variant failing, and end to end a deliberately slowed kernel failing `check`
(exit 1) against a stored baseline. The side-by-side (A/B) mode is tests/test_regress_ab.py."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, run_cli, write_suite

from harness.gate import check as regress
from harness.cli import main
from harness.gate.measure import CALIBRATION_ID, FORMAT, FORMAT_VERSION, ROUNDS, device_class, speed_fingerprint

STEADY = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00, 1.01, 0.99]  # normalised, +-3%


# ---- the statistics, on synthetic samples ----------------------------------------------------

def test_a_clear_1_5x_slowdown_is_a_regression():
    ratio, p, verdict = regress.judge(STEADY, [1.5 * x for x in reversed(STEADY)])
    assert verdict == "regressed" and ratio == pytest.approx(1.5) and p < regress.ALPHA


def test_noise_of_10_percent_around_an_unchanged_median_is_never_a_regression():
    rng = random.Random(0)
    for _ in range(300):
        base = [rng.uniform(0.9, 1.1) for _ in range(ROUNDS)]
        current = [rng.uniform(0.9, 1.1) for _ in range(ROUNDS)]
        assert regress.judge(base, current)[2] == "ok"


def test_a_median_over_the_threshold_within_the_measured_spread_is_ambiguous():
    base = [0.5, 0.7, 0.9, 1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0]
    current = [0.6, 0.8, 1.0, 1.4, 1.5, 1.6, 1.9, 2.2, 2.6, 3.1]
    ratio, p, verdict = regress.judge(base, current)
    assert ratio > 1.25 and p > regress.ALPHA and verdict == "ambiguous"
    ratio, p, verdict = regress.judge(current, base)  # the mirror image: faster, but not significantly
    assert ratio < 1 / 1.25 and p > regress.ALPHA and verdict == "ambiguous"


def test_a_significant_change_within_the_threshold_is_ok():
    ratio, p, verdict = regress.judge(STEADY, [1.1 * x for x in STEADY])
    assert p < regress.ALPHA and verdict == "ok"


# ---- paired samples (A/B): the two sides of a round are timed back to back ----------------------

DRIFT = [1.0, 1.9, 1.1, 2.0, 1.0, 1.4, 1.0, 2.1, 1.2, 1.0, 1.8, 1.0, 1.1, 2.0, 1.0, 1.5, 1.0, 1.9, 1.1, 1.0]


def test_paired_rounds_see_a_10_percent_slowdown_through_a_2x_machine_drift():
    rng = random.Random(1)
    current = [1.10 * d * rng.uniform(0.98, 1.02) for d in DRIFT]
    assert regress.judge(DRIFT, current, threshold=0.05)[2] == "ambiguous"  # unpaired: lost in the drift
    ratio, p, verdict = regress.judge(DRIFT, current, threshold=0.05, paired=True)
    assert verdict == "regressed" and ratio == pytest.approx(1.10, abs=0.02) and p < 1e-4


def test_one_unlucky_pair_of_processes_is_ambiguous_and_a_real_slowdown_in_every_pair_regresses():
    rng = random.Random(3)
    # 30 pairs from 2 pairs of worker processes: the first pair's "this tree" process landed 9 % slower
    # (its own luck), the second's 2 %; pooled, the median ratio is past 5 % and the sign test significant
    lucky = [d * (1.09 if r < 15 else 1.02) * rng.uniform(0.99, 1.01) for r, d in enumerate(DRIFT + DRIFT[:10])]
    base = DRIFT + DRIFT[:10]
    ratio, p, verdict = regress.judge(base, lucky, threshold=0.05, paired=True)
    assert ratio > 1.05 and p < 0.01 and verdict == "regressed"  # what one pool of rounds would say
    assert regress.judge(base, lucky, threshold=0.05, paired=True, groups=2)[2] == "ambiguous"
    slower = [d * 1.10 * rng.uniform(0.98, 1.02) for d in base]  # the code: every process alike
    assert regress.judge(base, slower, threshold=0.05, paired=True, groups=2)[2] == "regressed"
    faster = [d / 1.10 * rng.uniform(0.98, 1.02) for d in base]
    assert regress.judge(base, faster, threshold=0.05, paired=True, groups=2)[2] == "faster"


def test_paired_rounds_of_unchanged_code_are_never_a_regression():
    rng = random.Random(2)
    for _ in range(300):
        base = [d * rng.uniform(0.97, 1.03) for d in DRIFT]
        current = [d * rng.uniform(0.97, 1.03) for d in DRIFT]
        assert regress.judge(base, current, threshold=0.05, paired=True)[2] == "ok"


def test_a_clear_speedup_is_faster_and_not_a_failure():
    assert regress.judge(STEADY, [x / 1.5 for x in STEADY])[2] == "faster"


def test_the_threshold_is_a_fraction():
    slower = [1.2 * x for x in STEADY]
    assert regress.judge(STEADY, slower, threshold=0.25)[2] == "ok"
    assert regress.judge(STEADY, slower, threshold=0.1)[2] == "regressed"


# ---- a gate that can always say no: the fewest rounds with which a slowdown can be significant ----

def test_the_fewest_rounds_are_where_a_case_slower_in_every_round_first_regresses_and_every_count_above_can_fail():
    """min_rounds is computed from the test itself: at the minimum a 1000x slowdown in every round is
    `regressed`, one round fewer it could only be `ambiguous` (what the refusal protects against), and
    every allowed count above the minimum can fail too."""
    from harness.gate.ab import PROCESS_PAIRS

    def verdict(n, m=None):
        if m is None:  # side by side: paired rounds, shared out over the pairs of processes
            base = [1 + (i % 3) / 10 for i in range(n)]
            return regress.judge(base, [1000 * b for b in base], 0.05, paired=True, groups=PROCESS_PAIRS)
        return regress.judge([1 + i / 100 for i in range(m)], [1000 + i for i in range(n)], 0.25)

    assert [regress.min_rounds(m) for m in (None, 3, 4, 5, 6, 7, 10)] == [7, 7, 5, 4, 4, 3, 3]
    for m in (None, 3, 4, 5, 7, 8, 9, 10, 30):
        need = regress.min_rounds(m)
        for n in range(need, 41):
            ratio, p, v = verdict(n, m)
            assert v == "regressed" and ratio > 100 and p < regress.ALPHA, (m, n, p)
        if need > 3:
            ratio, p, v = verdict(need - 1, m)
            assert v == "ambiguous" and p >= regress.ALPHA and p == pytest.approx(regress.smallest_p(need - 1, m))
    assert regress.smallest_p(3) == 0.125 and regress.smallest_p(5, 3) == pytest.approx(1 / 56)  # 1/C(8, 3)


def test_the_rounds_help_states_the_defaults_and_minimums_the_code_uses():
    from harness.cli import build_parser
    from harness.gate.check import ROUNDS_AB, min_rounds

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    helps = {name: next(a.help for a in sub[name]._actions if a.dest == "rounds") for name in ("check", "baseline")}
    assert (f"pairs side by side (default {ROUNDS_AB}, at least {min_rounds()})" in helps["check"]
            and f"against stored numbers (default {ROUNDS}; at least {min_rounds(10)} to {min_rounds(3)}, by the "
                f"baseline's own rounds)" in helps["check"]), helps["check"]
    assert (f"(default {ROUNDS}; a check --stored against a baseline of 3 rounds needs {min_rounds(3)} of its own, "
            f"of 5 needs {min_rounds(5)}" in helps["baseline"]), helps["baseline"]


def test_rounds_too_few_to_ever_be_significant_are_refused_before_anything_is_timed(tmp_path, capsys):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "r"
    code, err = check_main(capsys, suite, "--against", "HEAD", "--rounds", "3", "--device", "cpu", "--out", out)
    assert (code, err) == (2, "error: --rounds 3: side by side, the sign test over 3 pairs reaches p = 0.125 at best "
                              "(every pair slower: 0.5^3), never below alpha 0.01, so no slowdown could fail the "
                              "check; give --rounds 7 or more (default 30)")
    committed = tmp_path / "committed.json"  # a clean commit's baseline on this machine: measured side by side
    committed.write_text(json.dumps(doc({"k": case()})))
    code, err = check_main(capsys, suite, "--baseline", committed, "--rounds", "6", "--device", "cpu", "--out", out)
    assert code == 2 and err.startswith("error: --rounds 6: side by side, the sign test over 6 pairs reaches p = "
                                        "0.0156 at best") and err.endswith("give --rounds 7 or more (default 30)")
    three = tmp_path / "three.json"  # recorded with `baseline --rounds 3`
    three.write_text(json.dumps(doc({"k": case(normalised=STEADY[:3])}, rounds=3)))
    code, err = check_main(capsys, suite, "--baseline", three, "--stored", "--rounds", "5", "--device", "cpu",
                           "--out", out)
    assert (code, err) == (2, f"error: --rounds 5: against the 3 rounds of {three}, Mann-Whitney U reaches p = 0.0179 "
                              f"at best (every round slower than every round of the baseline), never below alpha "
                              f"0.01, so no slowdown could fail the check; give --rounds 7 or more (default 10), or "
                              f"record the baseline with more rounds")
    assert not out.exists()


def test_a_large_slowdown_fails_a_stored_check_at_the_fewest_rounds_and_fewer_are_refused(tmp_path, monkeypatch):
    """End to end, what a CI job that lowers the rounds gets: against a 3-round baseline, 5 rounds
    (which let a 971x slowdown pass as `ambiguous, p 0.018`) are exit 2 naming 7, and 7 catch it."""
    one_case = TINY.replace("variants: [native, vectorized]", "variants: [vectorized]")
    suite = write_suite(tmp_path / "tiny.yaml", one_case)
    base, out = tmp_path / "b.json", tmp_path / "r"
    proc = run_cli("baseline", suite, "--out", base, "--device", "cpu", "--allow-dirty", "--rounds", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    monkeypatch.setenv("HARNESS_REGRESS_SLOWDOWN", "20")
    proc = run_cli("check", suite, "--baseline", base, "--stored", "--rounds", "5", "--device", "cpu", "--out", out)
    assert proc.returncode == 2 and "give --rounds 7 or more" in proc.stderr and not out.exists(), proc.stderr
    proc = run_cli("check", suite, "--baseline", base, "--stored", "--rounds", "7", "--device", "cpu", "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("comparing with its stored numbers") and "1 cases: 1 regressed" in proc.stdout


# ---- comparing two documents -----------------------------------------------------------------

def case(variant="native", *, code_hash="aaaa", status="ok", normalised=STEADY, error=None, **kw):
    return {"experiment": "corr2d", "variant": variant, "size": "in=8x8 k=3x3", "baseline_variant": "native",
            "code_hash": code_hash, "dtype": "float32", "threads": 1, "status": status, "error": error,
            "normalised": list(normalised), "best_s": [1e-5 * x for x in normalised], "median_s": 1e-5, "speedup": 1.0,
            **kw}


def doc(cases: dict, suite="tiny", device_class="cpu", machine=None, rounds=ROUNDS) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "suite": suite, "device_class": device_class,
            "machine": machine if machine is not None else speed_fingerprint("cpu"),
            "env": {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False},
            "method": {"rounds": rounds, "calibration": CALIBRATION_ID, "injected_slowdown": None},
            "calibration": {"1": {"best_s": [4e-5] * (rounds + 1), "parts": {}}}, "cases": cases}


def verdicts(base: dict, current: dict) -> dict:
    rows, _ = regress.compare(doc(base), doc(current), 0.25)
    return {r["case"]: (r["verdict"], r["reason"]) for r in rows}


def test_a_changed_code_hash_is_not_comparable_against_stored_numbers_and_compared_side_by_side():
    slow = [3 * x for x in STEADY]
    assert verdicts({"k": case()}, {"k": case(code_hash="bbbb", normalised=slow)}) == {
        "k": ("not comparable", "kernel code changed since the baseline (code hash aaaa -> bbbb)")}
    rows, _ = regress.compare(doc({"k": case()}), doc({"k": case(code_hash="bbbb", normalised=slow)}), 0.05, "ab")
    assert (rows[0]["verdict"], rows[0]["reason"]) == ("regressed", "code changed (aaaa -> bbbb)")
    assert rows[0]["ratio"] == pytest.approx(3.0)


def test_a_case_missing_from_the_baseline_is_not_comparable_and_a_dropped_one_is_listed():
    rows, gone = regress.compare(doc({"old": case()}), doc({"new": case()}), 0.25)
    assert [(r["case"], r["verdict"], r["reason"]) for r in rows] == [("new", "not comparable", "not in the baseline")]
    assert gone == ["old"]


def test_changed_settings_and_capped_cases_are_not_comparable():
    out = verdicts({"t": case(), "c": case()},
                   {"t": case(threads=2), "c": case(status="capped", error="not run: 10 iterations > 5")})
    assert out["t"][0] == out["c"][0] == "not comparable"
    assert "threads" in out["t"][1] and out["c"][1] == "not run: 10 iterations > 5"


def test_a_wrong_variant_is_failed_never_compared():
    fast = [x / 10 for x in STEADY]
    out = verdicts({"k": case()}, {"k": case(status="failed", error="wrong result: max abs error 1 > tolerance 1e-4",
                                             normalised=fast)})
    assert out["k"] == ("failed", "wrong result: max abs error 1 > tolerance 1e-4")


def test_baseline_json_round_trips_with_samples_on_one_line():
    from harness.gate.baseline_file import dumps

    d = doc({"k": case(samples_s=[[1e-5, 2e-5], [3e-5]])})
    text = dumps(d)
    assert json.loads(text) == d and '"normalised": [1.0, 1.02,' in text


def test_device_class_is_cpu_for_any_cpu_and_the_normalised_gpu_name(monkeypatch):
    import torch

    assert device_class("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert device_class("cuda") == "cuda-nvidia-h100-80gb-hbm3"


# ---- bad input: exit 2 with what to do, before anything is timed ------------------------------

TINY = """
    suite: tiny
    defaults: {min_run_time_s: 0.005, threads: 1}
    experiments:
      - {name: corr2d, kind: kernel, kernel: corr2d, variants: [native, vectorized], sizes: {input: [[16, 16]], kernel: [[3, 3]]}}
"""


def check_main(capsys, *args) -> tuple[int, str]:
    code = main(["check", *map(str, args)])
    return code, capsys.readouterr().err.strip()


def test_a_baseline_of_another_format_version_is_refused_with_an_instruction(tmp_path, capsys):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc({}) | {"format_version": 0}))
    code, err = check_main(capsys, suite, "--baseline", old)
    assert code == 2
    assert err == (f"error: {old}: baseline format version 0, this harness reads {FORMAT_VERSION}; re-record it "
                   f"with this harness: python -m harness baseline {suite} --out {old}")


@pytest.mark.parametrize("content, message", [
    (None, "no such baseline file; record one: python -m harness baseline"),
    ("{not json", "not a baseline file (not readable JSON"),
    ('{"cases": {}}', 'not a harness baseline file (no "format": "harness-kernel-baseline")'),
    (json.dumps(doc({"k": {"status": "ok"}})), "damaged baseline file: cases['k'].code_hash: missing"),
    (json.dumps(doc({"k": case()}, suite="other")), "a baseline of suite 'other', not 'tiny'"),
    (json.dumps(doc({"k": case()}, device_class="cuda-nvidia-h100")),
     "recorded on device class 'cuda-nvidia-h100', this check runs on 'cpu'; pass --device to match it"),
    (json.dumps(doc({}) | {"method": {"calibration": "old"}}), "normalised by calibration 'old'"),
])
def test_bad_baseline_files_exit_2(tmp_path, capsys, content, message):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    code, err = check_main(capsys, suite, "--baseline", path, "--device", "cpu", "--out", tmp_path / "r")
    assert code == 2 and err.startswith(f"error: {path}: ") and message in err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_bad_threshold_suite_kind_and_injection_exit_2(tmp_path, capsys, monkeypatch):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    assert check_main(capsys, suite, "--baseline", "b.json", "--threshold", "0") == (
        2, "error: --threshold 0.0: a fraction > 0, e.g. 0.25 for 25% slower")
    mixed = write_suite(tmp_path / "mixed.yaml", TINY + "      - {name: learn, kind: learn_kernel}\n")
    code, err = check_main(capsys, mixed, "--baseline", "b.json")
    assert code == 2 and "the regression gate times kernel experiments only; remove learn (learn_kernel)" in err
    monkeypatch.setenv("HARNESS_REGRESS_SLOWDOWN", "1.5")
    assert main(["baseline", str(suite), "--out", str(tmp_path / "b.json")]) == 2
    assert "a baseline must be recorded on unchanged code" in capsys.readouterr().err


BAD_FILES = {
    "NaN sample": (lambda d: d["cases"]["k"]["normalised"].__setitem__(3, float("nan")),
                   "cases['k'].normalised[3]: nan is not a finite positive number"),
    "negative time": (lambda d: d["cases"]["k"].__setitem__("median_s", -1e-5),
                      "cases['k'].median_s: Input should be greater than 0 (got -1e-05)"),
    "no cases": (lambda d: d.__setitem__("cases", {}), "cases: Dictionary should have at least 1 item"),
    "threads as text": (lambda d: d["cases"]["k"].__setitem__("threads", "1"),
                        "cases['k'].threads: Input should be a valid integer (got '1')"),
    "cases as a list": (lambda d: d.__setitem__("cases", [1]), "cases: Input should be a valid dictionary"),
    "too few rounds": (lambda d: d["cases"]["k"].__setitem__("normalised", [1.0]),
                       "cases['k'].normalised: List should have at least 3 items"),
}


@pytest.mark.parametrize("damage", sorted(BAD_FILES))
def test_nan_empty_and_wrongly_typed_baselines_exit_2_naming_the_field_before_any_timing(tmp_path, damage):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    document = doc({"k": case()})
    change, message = BAD_FILES[damage]
    change(document)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(document))
    proc = run_cli("check", suite, "--baseline", path, "--device", "cpu", "--out", tmp_path / "r")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: {path}: damaged baseline file: ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "timing" not in proc.stderr and not (tmp_path / "r").exists()


FOREIGN_AND_INCONSISTENT = {
    "an empty calibration list": (lambda d: d["calibration"]["1"].__setitem__("best_s", []),
                                  "calibration['1'].best_s: List should have at least 4 items"),
    "no calibration": (lambda d: d.pop("calibration"), "calibration: missing"),
    "no calibration of the threads a case ran with": (
        lambda d: d.__setitem__("calibration", {}), "calibration: no entry for 1 thread(s), which cases['k'] ran with"),
    "a foreign field in a case": (lambda d: d["cases"]["k"].__setitem__("colour", "red"),
                                  "cases['k'].colour: not a field of a baseline file"),
    "a foreign top-level field": (lambda d: d.__setitem__("results", []), "results: not a field of a baseline file"),
    "fewer samples than rounds": (lambda d: d["cases"]["k"].__setitem__("normalised", STEADY[:5]),
                                  "cases['k'].normalised: 5 rounds, method.rounds says 10"),
    "a calibration of other rounds": (lambda d: d["calibration"]["1"].__setitem__("best_s", [4e-5] * 5),
                                      "calibration['1'].best_s: 5 samples, the 10 rounds and the closing calibration "
                                      "make 11"),
    "a speedup as text": (lambda d: d["cases"]["k"].__setitem__("speedup", "fast"),
                          "cases['k'].speedup: Input should be a valid number, unable to parse string as a number "
                          "(got 'fast')"),
    "a slowed recording": (lambda d: d["method"].__setitem__("injected_slowdown", 1.5),
                           "method.injected_slowdown: Input should be None (got 1.5)"),
    "rounds as text": (lambda d: d["method"].__setitem__("rounds", "10"),
                       "method.rounds: Input should be a valid integer (got '10')"),
}


@pytest.mark.parametrize("damage", sorted(FOREIGN_AND_INCONSISTENT))
def test_foreign_fields_missing_calibrations_and_samples_that_disagree_with_the_rounds_exit_2(tmp_path, capsys,
                                                                                           damage):
    """Each of these was accepted and failed after the timing (an empty calibration list: StatisticsError
    writing check.md), or judged with sample sizes the file did not say."""
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    document = doc({"k": case()})
    change, message = FOREIGN_AND_INCONSISTENT[damage]
    change(document)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(document))
    code, err = check_main(capsys, suite, "--baseline", path, "--stored", "--device", "cpu", "--out", tmp_path / "r")
    assert code == 2 and err.startswith(f"error: {path}: damaged baseline file: ") and message in err, err
    assert err.endswith(f"re-record it: python -m harness baseline {suite} --out {path}")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, message", [
    ('{"format": "harness-kernel-baseline", "format": "x"}',
     "not a baseline file (not readable JSON: duplicate key 'format' in one object)"),
    ('{"format_version": 1' + "0" * 5000 + "}", "not a baseline file (not readable JSON: Exceeds the limit"),
    (b'{"suite": "\xff"}', "not a baseline file (not readable JSON: 'utf-8' codec can't decode byte 0xff"),
    ('{"a": ' * 600 + "1" + "}" * 600, "nested deeper than 16 levels, not a baseline file (one nests 7)"),
    ("null", 'not a harness baseline file (no "format": "harness-kernel-baseline")'),
])
def test_damaged_json_is_exit_2_naming_the_file(tmp_path, capsys, content, message):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    path = tmp_path / "b.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, err = check_main(capsys, suite, "--baseline", path, "--device", "cpu", "--out", tmp_path / "r")
    assert code == 2 and err.startswith(f"error: {path}: {message}"), err
    assert err.endswith(f"; give a file that `baseline` wrote, or remove this one and record one: python -m harness "
                        f"baseline {suite} --out {path}")


def test_a_baseline_nested_100000_levels_deep_is_exit_2_without_a_traceback(tmp_path):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    path = tmp_path / "deep.json"
    path.write_text('{"cases": ' * 100_000 + "{}" + "}" * 100_000)
    proc = run_cli("check", suite, "--baseline", path, "--device", "cpu", "--out", tmp_path / "r")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: nested deeper than 16 levels, not a baseline file"), proc.stderr


def test_a_directory_as_baseline_names_the_flag_and_the_files_in_it(tmp_path, capsys):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    empty, full = tmp_path / "empty", tmp_path / "baselines"
    empty.mkdir()
    full.mkdir()
    for name in ("b.json", "a.json"):
        (full / name).write_text("{}")
    assert check_main(capsys, suite, "--baseline", empty, "--device", "cpu") == (
        2, f"error: --baseline {empty}: is a directory; --baseline takes a baseline file that `baseline` wrote; "
           f"record one: python -m harness baseline {suite} --out {empty / 'tiny-cpu.json'}")
    assert check_main(capsys, suite, "--baseline", full, "--device", "cpu") == (
        2, f"error: --baseline {full}: is a directory; --baseline takes a baseline file that `baseline` wrote, "
           f"e.g. {full / 'a.json'} (here: a.json, b.json)")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # reading it would wait forever for a writer
    assert check_main(capsys, suite, "--baseline", fifo, "--device", "cpu") == (
        2, f"error: --baseline {fifo}: not a regular file; give a baseline file that `baseline` wrote")


def test_baseline_out_is_checked_before_anything_is_timed(tmp_path, capsys):
    from harness.gate.baseline_file import check_out_file

    suite = write_suite(tmp_path / "tiny.yaml", TINY)

    def baseline(out, *more):
        code = main(["baseline", str(suite), "--out", str(out), "--device", "cpu", "--allow-dirty", *more])
        captured = capsys.readouterr()
        assert "timing" not in captured.err and not captured.out, captured  # refused before the timing
        return code, captured.err.strip()

    assert baseline(tmp_path) == (2, f"error: --out {tmp_path}: is a directory; --out names the baseline file to "
                                     f"write, e.g. {tmp_path / 'tiny-cpu.json'}")
    assert baseline(suite / "b.json") == (2, f"error: --out {suite / 'b.json'}: {suite} is a file, not a directory; "
                                             f"give the baseline file to write, e.g. results/baselines/tiny-cpu.json")
    before = suite.read_text()
    assert baseline(suite) == (2, f"error: --out {suite}: exists and is not a baseline file, and would be replaced; "
                                  f"give a new path or an existing baseline to re-record, or remove it first")
    assert suite.read_text() == before
    assert baseline(tmp_path / "b.json", "--rounds", "0") == (
        2, "error: --rounds 0: from 3 (a median and a test need several rounds) to 10,000, e.g. 10")  # not 10 silently
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc({}) | {"format_version": 0}))
    check_out_file(old)  # a baseline, of any version: replacing it is how one is re-recorded
    check_out_file(tmp_path / "new" / "dir" / "b.json")  # parents that can be created
    run = tmp_path / "results" / "tiny" / "20260101T000000Z-abcdef"  # the rule of every --out: not in a run
    run.mkdir(parents=True)
    (run / "state.json").write_text("{}")
    assert baseline(run / "b.json") == (2, f"error: --out {run / 'b.json'}: is inside the run directory {run}; write "
                                           f"outside any run directory: give the file to write (e.g. "
                                           f"results/baselines/tiny-cpu.json)")
    assert sorted(p.name for p in run.iterdir()) == ["state.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_baseline_out_in_a_directory_this_user_cannot_write_is_exit_2(tmp_path, capsys):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert main(["baseline", str(suite), "--out", str(locked / "b.json"), "--device", "cpu", "--allow-dirty"]) == 2
        assert capsys.readouterr().err.strip() == (f"error: --out {locked / 'b.json'}: {locked} is not writable by "
                                                   f"this user; choose another --out")
    finally:
        locked.chmod(0o700)


def test_check_out_that_is_a_file_a_run_or_a_suite_directory_is_refused_before_anything_is_timed(tmp_path, capsys):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc({"k": case()})))
    assert check_main(capsys, suite, "--baseline", path, "--stored", "--device", "cpu", "--out", suite) == (
        2, f"error: --out {suite}: is a file, not a directory; give a results root, which gets a new run directory "
           f"<suite>/<UTC time>-<id> (e.g. results/)")
    run = tmp_path / "results" / "tiny" / "20260101T000000Z-abcdef"  # the rule of every --out (run.rundir.check_out)
    run.mkdir(parents=True)
    (run / "results.csv").write_text("")
    assert check_main(capsys, suite, "--baseline", path, "--stored", "--device", "cpu", "--out", run) == (
        2, f"error: --out {run}: is a run directory (it holds results.csv), and no command writes into one; give a "
           f"results root, which gets a new run directory <suite>/<UTC time>-<id> (e.g. results/)")
    assert check_main(capsys, suite, "--baseline", path, "--stored", "--device", "cpu", "--out", run.parent)[1] == (
        f"error: --out {run.parent}: is a suite directory (it holds the run directory {run.name}), not a results "
        f"root; give the results root above it ({run.parent.parent}) or a new path")
    assert sorted(p.name for p in run.iterdir()) == ["results.csv"]


@pytest.mark.parametrize("value", ["inf", "nan", "0.5"])
def test_an_injected_slowdown_that_is_not_a_finite_factor_of_at_least_1_is_exit_2(tmp_path, capsys, monkeypatch,
                                                                                  value):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    monkeypatch.setenv("HARNESS_REGRESS_SLOWDOWN", value)  # inf would busy-wait forever in the first case
    assert check_main(capsys, suite, "--against", "HEAD", "--device", "cpu", "--out", tmp_path / "r") == (
        2, f"error: HARNESS_REGRESS_SLOWDOWN={value}: give a finite factor >= 1 (e.g. 1.5), or unset it")


def test_ctrl_c_during_a_stored_check_says_nothing_was_written_in_one_line(tmp_path):
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    path, out = tmp_path / "b.json", tmp_path / "r"
    path.write_text(json.dumps(doc({"k": case()})))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "check", str(suite), "--baseline", str(path),
                             "--stored", "--rounds", "10000", "--device", "cpu", "--out", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = wait_for_line(proc, "timing 2 cases in 10000 interleaved rounds")
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=120)
    err += rest
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.splitlines()[-1] == ("interrupted (Ctrl-C): nothing was written (check.md and check.json are written "
                                    "once every case is timed)")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--mode", "ab", "--rounds", "3"], "--rounds 3: side by side, the sign test over 3 pairs reaches p = 0.125"),
    (["--slowdowns", "5,ten"], "--slowdowns 5,ten: slowdowns in %, comma-separated, e.g. 2,5,10,25,50"),
    (["--slowdowns", "5,inf"], "--slowdowns 5,inf: each a slowdown in % above 0 (at most 10000)"),
    (["--unchanged", "0", "--per-level", "0"], "--unchanged N (at least 1: the false alarms)"),
    (["--threshold", "0"], "--threshold 0.0: a fraction > 0"),
    (["--mode", "ab", "--baseline", "b.json"], "--baseline FILE is the stored numbers of --mode stored"),
])
def test_the_detection_study_checks_its_arguments_before_any_check_runs(tmp_path, capsys, args, message):
    """A study whose checks could never fail, or that runs none (StatisticsError at the end), or whose
    slowdowns are not numbers (a traceback), is exit 2 before anything is timed."""
    from harness.gate import study

    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    with pytest.raises(SystemExit) as exit_:
        study.main(["--calibrate", str(suite), "--out", str(tmp_path / "s"), *args])
    assert exit_.value.code == 2 and f"error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_the_detection_study_validates_its_baseline_before_any_check_runs(tmp_path, capsys):
    from harness.gate import study

    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    damaged = doc({"k": case()})
    damaged["calibration"]["1"]["best_s"] = []
    path = tmp_path / "b.json"
    path.write_text(json.dumps(damaged))
    with pytest.raises(SystemExit) as exit_:
        study.main(["--calibrate", str(suite), "--mode", "stored", "--baseline", str(path),
                    "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert f"error: {path}: damaged baseline file: calibration['1'].best_s: List should have at least 4 items" in err
    three = tmp_path / "three.json"
    three.write_text(json.dumps(doc({"k": case(normalised=STEADY[:3])}, rounds=3)))
    with pytest.raises(SystemExit) as exit_:
        study.main(["--calibrate", str(suite), "--mode", "stored", "--baseline", str(three), "--rounds", "5"])
    assert exit_.value.code == 2 and "give --rounds 7 or more" in capsys.readouterr().err


def wait_for_line(proc: subprocess.Popen, text: str) -> str:
    """stderr of `proc` up to and including the first line containing `text` (fails if it ends first)."""
    seen = ""
    for line in proc.stderr:
        seen += line
        if text in line:
            return seen
    proc.wait()
    pytest.fail(f"exited {proc.returncode} before printing {text!r}:\n{seen}")


# ---- measuring: a wrong variant fails the check -----------------------------------------------

def test_a_wrong_variant_fails_the_check_with_exit_1(tmp_path, monkeypatch, capsys):
    from harness.kernels import KERNELS
    from harness.kernels.base import Variant

    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    base = tmp_path / "base.json"
    assert main(["baseline", str(suite), "--out", str(base), "--device", "cpu", "--allow-dirty"]) == 0
    family = KERNELS.get("corr2d")
    right = family.variants["vectorized"].fn
    monkeypatch.setitem(family.variants, "vectorized", Variant("vectorized", lambda case, X, K: right(case, X, K) + 1))
    assert main(["check", str(suite), "--baseline", str(base), "--device", "cpu", "--out", str(tmp_path / "r"),
                 "--stored"]) == 1
    out = capsys.readouterr().out
    assert "failed         corr2d/vectorized/in=16x16 k=3x3" in out and "wrong result: max abs error" in out
    (check,) = (tmp_path / "r" / "tiny-check").glob("*/check.json")
    assert json.loads(check.read_text())["summary"]["failed"] == 1


# ---- end to end: a deliberately slowed kernel, in real subprocesses ---------------------------

PLUGIN = '''
"""Test-only: corr2d's native variant again as `native_probe`; with PROBE_TWICE=1 it does the same
work twice (a deliberate 2x slowdown). Same source either way, so the same code hash."""
import os

from harness.kernels import KERNELS
from harness.kernels.corr2d import native

TWICE = os.environ.get("PROBE_TWICE") == "1"


@KERNELS.get("corr2d").variant("native_probe")
def native_probe(case, X, K):
    if TWICE:
        native(case, X, K)
    return native(case, X, K)
'''

PROBE_SUITE = """
    suite: probe
    defaults: {min_run_time_s: 0.01, threads: 1}
    experiments:
      - {name: corr2d, kind: kernel, kernel: corr2d, variants: [native, native_probe], sizes: {input: [[64, 64]], kernel: [[3, 3]]}}
"""


def test_a_kernel_doing_its_work_twice_fails_check_against_the_original_and_passes_its_own(tmp_path, monkeypatch):
    (tmp_path / "probe_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "probe_plugin")
    monkeypatch.delenv("PROBE_TWICE", raising=False)
    suite = write_suite(tmp_path / "probe.yaml", PROBE_SUITE)
    original, slowed, out = tmp_path / "original.json", tmp_path / "slowed.json", tmp_path / "results"

    proc = run_cli("baseline", suite, "--out", original, "--device", "cpu", "--allow-dirty")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    monkeypatch.setenv("PROBE_TWICE", "1")
    # threshold 50%: the mechanics of stored mode (a 2x slowdown caught, the unchanged twin passed), not the
    # false-alarm rate of its 25% default on a noisy VM, which the detection study measures (docs/gate.md)
    proc = run_cli("check", suite, "--baseline", original, "--device", "cpu", "--out", out, "--stored",
                   "--threshold", "0.5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("regressed") and "corr2d/native_probe/in=64x64 k=3x3" in ln for ln in lines), proc.stdout
    assert any(ln.startswith("ok") and "corr2d/native/in=64x64 k=3x3" in ln for ln in lines), proc.stdout
    (run_dir,) = (out / "probe-check").iterdir()
    assert "| regressed | `corr2d/native_probe/in=64x64 k=3x3` |" in (run_dir / "check.md").read_text()
    report = json.loads((run_dir / "check.json").read_text())
    assert report["summary"]["regressed"] == 1 and report["current"]["format_version"] == FORMAT_VERSION

    proc = run_cli("baseline", suite, "--out", slowed, "--device", "cpu", "--allow-dirty")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("check", suite, "--baseline", slowed, "--device", "cpu", "--out", out, "--stored",
                   "--threshold", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 cases: 2 ok" in proc.stdout


def test_a_plugin_that_cannot_be_imported_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS", "no_such_plugin_module")
    suite = write_suite(tmp_path / "tiny.yaml", TINY)
    proc = run_cli("list", suite)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: HARNESS_PLUGINS: cannot import 'no_such_plugin_module'")
