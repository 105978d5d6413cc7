"""The gate's baseline file: read, validated whole before anything is timed, and written.

A baseline is versioned JSON (FORMAT, FORMAT_VERSION): the suite, the device class, the speed
fingerprint of the machine it was recorded on (`machine`: harness.gate.measure.speed_fingerprint),
the environment (python, torch, CPU/GPU, the git commit it was recorded at, never a dirty tree
unless --allow-dirty), the method (rounds, calibration id), the calibration's samples, and per case
the code hash, settings, statistics and every raw sample.

Every problem is a UserError (exit 2) naming the file and the field, with the command that
re-records it: a missing, unreadable or oversized file, a directory, damaged JSON (a duplicate key,
nesting deeper than MAX_DEPTH: json.loads would recurse into a RecursionError), another format or
calibration, a field this harness does not write (the file and every object the gate reads are
closed; only `env` and `machine` are open), a wrong type, a sample that is not a finite positive
number, no cases, sample lists whose lengths disagree with the rounds the file says it measured.
`baseline --out FILE` is checked before anything is timed too (`check_out_file`).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from harness.core import jsonfile
from harness.core.errors import UserError
from harness.gate.measure import (CALIBRATION_ID, FORMAT, FORMAT_VERSION, MAX_ROUNDS, MIN_ROUNDS, ROUNDS,
                                  SLOWDOWN_ENV)

MAX_FILE_BYTES = 256 << 20  # kernels-ci.yaml's 20 cases x 10 rounds are 120 KB; 10,000 rounds ~120 MB
MAX_DEPTH = 16  # a baseline nests 7 levels (calibration.<threads>.parts.<part>.samples_s[round][block])

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=False)]
Count = Annotated[StrictInt, Field(ge=1)]
Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{7,64}$")]
Text = StrictStr | None


class _Closed(BaseModel):
    """What this harness writes, and nothing else: a foreign field is a foreign or damaged file."""
    model_config = ConfigDict(extra="forbid")


class _Case(_Closed):
    status: Literal["ok", "capped", "failed", "missing", "skipped"]
    code_hash: StrictStr | None
    dtype: StrictStr
    threads: Count
    experiment: Text = None
    family: Text = None
    variant: Text = None
    size: Text = None
    baseline_variant: Text = None
    min_run_time_s: Positive | None = None
    error: Text = None
    max_abs_err: NonNegative | None = None
    tolerance: NonNegative | None = None
    normalised: Annotated[list[Positive], Field(min_length=MIN_ROUNDS)] | None = None
    best_s: list[Positive] | None = None
    round_median_s: list[Positive] | None = None
    number_per_run: list[Count] | None = None
    samples_s: list[Annotated[list[Positive], Field(min_length=1)]] | None = None
    median_s: Positive | None = None
    normalised_median: Positive | None = None
    speedup: Positive | None = None

    @model_validator(mode="after")
    def _timed_when_ok(self):
        if self.status == "ok":
            missing = [k for k in ("normalised", "median_s", "best_s", "code_hash") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"an ok case needs {', '.join(missing)}")
        return self


class _Part(_Closed):
    best_s: list[Positive]
    round_median_s: list[Positive]
    number_per_run: list[Count]
    samples_s: list[Annotated[list[Positive], Field(min_length=1)]]


class _Calibration(_Closed):
    best_s: Annotated[list[Positive], Field(min_length=MIN_ROUNDS + 1)]  # a closing calibration ends the rounds
    parts: dict[StrictStr, _Part]


class _Env(BaseModel):
    model_config = ConfigDict(extra="allow")  # the environment it was recorded in: informative, grows
    git_commit: Hex | None = None
    git_dirty: StrictBool | None = None


class _Method(_Closed):
    rounds: Annotated[StrictInt, Field(ge=MIN_ROUNDS, le=MAX_ROUNDS)]
    calibration: StrictStr
    injected_slowdown: None = None  # `baseline` refuses to record a slowed tree
    statistic: Text = None


class _Baseline(_Closed):
    format: Literal[FORMAT]
    format_version: Literal[FORMAT_VERSION]
    suite: StrictStr
    device_class: StrictStr
    machine: dict[str, StrictStr | StrictInt | None]
    env: _Env
    method: _Method
    calibration: dict[Annotated[str, Field(pattern=r"^[1-9][0-9]*$")], _Calibration]
    cases: Annotated[dict[str, _Case], Field(min_length=1)]
    suite_file: Text = None
    device: Text = None
    created_at: Text = None
    wall_s: NonNegative | None = None


def record_baseline(suite_path: Path, out: Path, device: str, rounds: int = ROUNDS, allow_dirty: bool = False) -> int:
    """`harness baseline`: measure the suite and write the baseline file (not when a case failed,
    not from a tree whose code cannot be measured again)."""
    from harness.core import envinfo
    from harness.core.io import atomic_write_text
    from harness.gate.ab import harness_root
    from harness.gate.measure import check_rounds, device_class, injected_slowdown, kernel_suite, measure_suite
    from harness.gate.report import us
    from harness.run import interrupt

    suite = kernel_suite(suite_path)
    check_out_file(out, f"{suite.name}-{device_class(device)}.json")
    check_rounds(rounds)
    if injected_slowdown():
        raise UserError(f"{SLOWDOWN_ENV} is set: a baseline must be recorded on unchanged code; unset it")
    git = envinfo.git_info(harness_root())
    if not allow_dirty and (git["git_commit"] is None or git["git_dirty"] is not False):
        what = "is not in a git checkout" if git["git_commit"] is None else "has uncommitted changes (git status)"
        raise UserError(f"baseline: this tree {what}; a baseline records the commit it measured, so that `check` "
                        f"can measure that commit again on a machine where the stored numbers do not apply. "
                        f"Commit first, or pass --allow-dirty for a baseline only this machine can use")
    doc = measure_suite(suite, device, rounds)
    for key, case in doc["cases"].items():
        note = case["error"] or f"{us(case['median_s'])}  normalised {case['normalised_median']:.4g}"
        print(f"{case['status']:<8} {key:<58} {note}")
    failed = [k for k, c in doc["cases"].items() if c["status"] == "failed"]
    if failed:
        print(f"{len(failed)} failed: no baseline written (a wrong or raising variant has no speed to keep)")
        return 1
    try:
        with interrupt.deferred():  # the whole file or none (the write is atomic; this keeps the line true)
            atomic_write_text(out, dumps(doc))
    except KeyboardInterrupt as e:
        e.written = out
        raise
    print(f"baseline of {len(doc['cases'])} cases ({doc['device_class']}, commit "
          f"{doc['env'].get('git_describe')}, {doc['wall_s']:.1f} s) -> {out}")
    return 0


def check_out_file(out: Path, name: str = "kernels-cpu.json") -> None:
    """`baseline --out FILE`: a file path this process can write, checked before anything is
    timed. Refused: a directory or other non-file; a path below a file; a parent it cannot
    create or write; an existing file that is not a baseline (it would be replaced; a baseline is
    replaced, which is how one is re-recorded)."""
    example = f"e.g. results/baselines/{name}"
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; --out names the baseline file to write, e.g. {out / name}")
    if out.exists() and not out.is_file():
        raise UserError(f"--out {out}: exists and is not a regular file; give the baseline file to write, {example}")
    existing = next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a directory; give the baseline file to write, "
                        f"{example}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {existing} is not writable by this user; choose another --out")
    from harness.run.rundir import check_out

    check_out(out, "file", example=f"results/baselines/{name}")  # the rule of every --out: never in a run directory
    if out.exists():
        try:
            doc = read_json(out)
        except UserError:
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UserError(f"--out {out}: exists and is not a baseline file, and would be replaced; give a new "
                            f"path or an existing baseline to re-record, or remove it first")


def read_json(path: Path, hint: str = "") -> object:
    """The JSON document in `path`, within MAX_FILE_BYTES and MAX_DEPTH, duplicate keys refused:
    a UserError naming the file for anything else (`hint` appended where the content is wrong)."""
    return jsonfile.read_json(path, what="a baseline file", max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH,
                              nests=7, hint=hint)


def load_baseline(path: Path, record_hint: str) -> dict:
    """Read and validate a baseline file (`check --baseline FILE`); every problem is a UserError
    that names the file and says what to do."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.json"))[:3]
        raise UserError(f"--baseline {path}: is a directory; --baseline takes a baseline file that `baseline` wrote"
                        + (f", e.g. {path / found[0]} (here: {', '.join(found)})" if found else
                           f"; record one: {record_hint}"))
    if not path.exists():
        raise UserError(f"{path}: no such baseline file; record one: {record_hint}")
    if not path.is_file():
        raise UserError(f"--baseline {path}: not a regular file; give a baseline file that `baseline` wrote")
    replace = f"; give a file that `baseline` wrote, or remove this one and record one: {record_hint}"
    doc = read_json(path, replace)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path}: not a harness baseline file (no \"format\": \"{FORMAT}\"){replace}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: baseline format version {doc.get('format_version')}, this harness reads "
                        f"{FORMAT_VERSION}; re-record it with this harness: {record_hint}")
    calibration = doc.get("method", {}).get("calibration") if isinstance(doc.get("method"), dict) else None
    if calibration != CALIBRATION_ID:
        raise UserError(f"{path}: normalised by calibration {calibration!r}, this harness uses "
                        f"{CALIBRATION_ID!r}; re-record it: {record_hint}")
    try:
        _Baseline.model_validate(doc)
        problems = _inconsistent(doc)
    except ValidationError as e:
        problems = [f"{_loc(err['loc'])}: {_msg(err)}" for err in e.errors(include_url=False)]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{path}: damaged baseline file: {'; '.join(problems[:3])}{more}; "
                        f"re-record it: {record_hint}")
    return doc


def _inconsistent(doc: dict) -> list[str]:
    """What a valid-looking file gets wrong between its fields: every ok case and calibration has
    one sample per round the method names (the tests' sample sizes are read from it), and the
    calibration of every thread count its ok cases ran with."""
    rounds, out = doc["method"]["rounds"], []
    for key, case in doc["cases"].items():
        if case["status"] != "ok":
            continue
        for field in ("normalised", "best_s", "round_median_s", "number_per_run", "samples_s"):
            if case.get(field) is not None and len(case[field]) != rounds:
                out.append(f"cases[{key!r}].{field}: {len(case[field])} rounds, method.rounds says {rounds}")
        if str(case["threads"]) not in doc["calibration"]:
            out.append(f"calibration: no entry for {case['threads']} thread(s), which cases[{key!r}] ran with")
    for threads, cal in doc["calibration"].items():
        lists = {"best_s": cal["best_s"], **{f"parts[{n!r}].{k}": v for n, p in cal["parts"].items()
                                             for k, v in p.items()}}
        for field, values in lists.items():
            if len(values) != rounds + 1:
                out.append(f"calibration[{threads!r}].{field}: {len(values)} samples, the {rounds} rounds and "
                           f"the closing calibration make {rounds + 1}")
    return out


def differences(recorded: dict, here: dict) -> list[str]:
    """`field: recorded -> here` for every speed-fingerprint field that differs."""
    return [f"{k}: {recorded.get(k)!s} -> {here.get(k)!s}" for k in dict.fromkeys([*recorded, *here])
            if recorded.get(k) != here.get(k)]


def dumps(doc: dict) -> str:
    """JSON with each list of numbers on one line: a baseline holds thousands of samples."""
    text = json.dumps(doc, indent=2)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n"


def _loc(loc: tuple) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 1 and loc[0] in ("cases", "machine", "calibration"):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _msg(err: dict) -> str:
    value = err.get("input")
    if err["type"] == "missing":
        return "missing"
    if err["type"] == "extra_forbidden":
        return "not a field of a baseline file"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite positive number"
    msg = err["msg"].removeprefix("Value error, ")
    return msg if isinstance(value, (dict, list)) or err["type"] == "value_error" else f"{msg} (got {value!r})"
