"""The gate's baseline file: read, validated whole before anything is timed, and written.

A baseline is versioned JSON (FORMAT, FORMAT_VERSION): the suite, the device class, the speed
fingerprint of the machine it was recorded on (`machine`: harness.gate.measure.speed_fingerprint),
the environment (python, torch, CPU/GPU, the git commit it was recorded at, never a dirty tree
unless --allow-dirty), the method (rounds, calibration id), the calibration's samples, and per case
the code hash, settings, statistics and every raw sample.

Every problem is a UserError (exit 2) naming the file and the field, with the command that
re-records it: a missing or unreadable file, another format or calibration, a wrong type, a sample
that is not a finite positive number, no cases.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from harness.core.errors import UserError
from harness.gate.measure import CALIBRATION_ID, FORMAT, FORMAT_VERSION, ROUNDS, SLOWDOWN_ENV

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=False)]
Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{7,64}$")]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Case(_Loose):
    status: Literal["ok", "capped", "failed", "missing", "skipped"]
    code_hash: StrictStr | None
    dtype: StrictStr
    threads: Annotated[StrictInt, Field(ge=1)]
    normalised: Annotated[list[Positive], Field(min_length=3)] | None = None
    median_s: Positive | None = None
    best_s: list[Positive] | None = None

    @model_validator(mode="after")
    def _timed_when_ok(self):
        if self.status == "ok":
            missing = [k for k in ("normalised", "median_s", "best_s", "code_hash") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"an ok case needs {', '.join(missing)}")
        return self


class _Env(_Loose):
    git_commit: Hex | None = None
    git_dirty: StrictBool | None = None


class _Method(_Loose):
    rounds: Annotated[StrictInt, Field(ge=3)]
    calibration: StrictStr


class _Baseline(_Loose):
    suite: StrictStr
    device_class: StrictStr
    machine: dict[str, StrictStr | StrictInt | None]
    env: _Env
    method: _Method
    cases: Annotated[dict[str, _Case], Field(min_length=1)]


def record_baseline(suite_path: Path, out: Path, device: str, rounds: int = ROUNDS, allow_dirty: bool = False) -> int:
    """`harness baseline`: measure the suite and write the baseline file (not when a case failed,
    not from a tree whose code cannot be measured again)."""
    from harness.core import envinfo
    from harness.core.io import atomic_write_text
    from harness.gate.ab import harness_root
    from harness.gate.measure import check_rounds, injected_slowdown, kernel_suite, measure_suite
    from harness.gate.report import us

    suite = kernel_suite(suite_path)
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
    atomic_write_text(out, dumps(doc))
    print(f"baseline of {len(doc['cases'])} cases ({doc['device_class']}, commit "
          f"{doc['env'].get('git_describe')}, {doc['wall_s']:.1f} s) -> {out}")
    return 0


def load_baseline(path: Path, record_hint: str) -> dict:
    """Read and validate a baseline file; every problem is a UserError that says what to do."""
    if not path.is_file():
        raise UserError(f"{path}: no such baseline file; record one: {record_hint}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a baseline file (not readable JSON: {e}); record one: {record_hint}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path}: not a harness baseline file (no \"format\": \"{FORMAT}\"); record one: {record_hint}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: baseline format version {doc.get('format_version')}, this harness reads "
                        f"{FORMAT_VERSION}; re-record it with this harness: {record_hint}")
    calibration = doc.get("method", {}).get("calibration") if isinstance(doc.get("method"), dict) else None
    if calibration != CALIBRATION_ID:
        raise UserError(f"{path}: normalised by calibration {calibration!r}, this harness uses "
                        f"{CALIBRATION_ID!r}; re-record it: {record_hint}")
    try:
        _Baseline.model_validate(doc)
    except ValidationError as e:
        problems = [f"{_loc(err['loc'])}: {_msg(err)}" for err in e.errors(include_url=False)]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{path}: damaged baseline file: {'; '.join(problems[:3])}{more}; "
                        f"re-record it: {record_hint}") from None
    return doc


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
        elif i == 1 and loc[0] in ("cases", "machine"):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _msg(err: dict) -> str:
    value = err.get("input")
    if err["type"] == "missing":
        return "missing"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite positive number"
    msg = err["msg"].removeprefix("Value error, ")
    return msg if isinstance(value, (dict, list)) or err["type"] == "value_error" else f"{msg} (got {value!r})"
