"""Reading back the files a run directory holds, each validated before anything uses it.

    df = read_results(run_dir)      # results.parquet (or .csv): harness.run.results.load, re-exported
    steps = read_steps(run_dir / "steps.csv")
    state, env = read_state(run_dir / "state.json"), read_env(run_dir / "env.json")
    suite = read_suite(run_dir / "suite.yaml")

Run directories are copied between machines, cut short by full disks and kills, and sometimes are
not the harness's at all; `report`, `dashboard`, `merge`, `reproduce`, `sync`, `run --resume` and
`launch --resume` read them through these functions and nothing else. Every problem is a UserError (exit 2) whose message starts with
the file: damaged (truncated, not UTF-8, not JSON/CSV/parquet), over a size bound, nested
absurdly deep, a duplicate key, foreign or missing columns, a value of the wrong type. A command
given the file (or its run directory) stops there; a command scanning a results root catches the
error, prints it as a warning and goes on with the other runs.

state.json and env.json are open (a later harness may add fields), but every field they are read
for is type-checked: a device of 5, or a shard that is a list, is a damaged file, not a value.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from harness.core import jsonfile
from harness.core.errors import UserError
from harness.run import results
from harness.run.results import RESULTS_FILES, load as read_results, names_text, results_file  # noqa: F401

MAX_BYTES = {  # what each file may be at most, read no further (a FIFO or /dev/zero cannot hang a reader)
    "state.json": 16 << 20,  # a few KiB; a state of 10,000 tasks is ~1 MiB
    "env.json": 16 << 20,  # a few KiB
    "steps.csv": 1 << 30,  # per-batch losses: a long training logs a few MiB
}
MAX_JSON_DEPTH = 16  # env.json nests 3 levels (argv, load_avg_*, reproduces), state.json 2 (children)
STEP_COLUMNS = ("experiment", "variant", "size", "seed", "step", "metric", "value")  # harness.run.task
DEVICE = rf"^{results.DEVICE}$"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a later harness adds are kept, not refused


class _State(_Open):
    run_id: StrictStr
    parent_run_id: StrictStr
    children: dict[StrictStr, StrictStr]
    tracking_uri: StrictStr = ""
    shard: StrictStr = "0/1"
    finished: StrictBool = False


Texts = list[StrictStr] | None


class _Env(_Open):
    device: Annotated[StrictStr, Field(pattern=DEVICE)] | None = None
    git_commit: StrictStr | None = None
    git_dirty: StrictBool | None = None
    git_describe: StrictStr | None = None
    started_at: StrictStr | None = None
    finished_at: StrictStr | None = None
    shard: StrictStr | None = None
    argv: Texts = None
    merged_from: Texts = None
    reproduces: dict[StrictStr, StrictStr] | None = None


def read_state(path: Path) -> dict:
    """A run directory's state.json (harness.run.rundir writes it), validated."""
    return _validated(path, _State, "a run's state.json", MAX_BYTES["state.json"])


def read_env(path: Path) -> dict:
    """A run directory's env.json (harness.run.runner writes it), validated."""
    return _validated(path, _Env, "a run's env.json", MAX_BYTES["env.json"])


def _validated(path: Path, model: type[BaseModel], what: str, limit: int) -> dict:
    path = Path(path)
    jsonfile.check_file(path, limit, what)
    doc = jsonfile.read_json(path, what=what, max_bytes=limit, max_depth=MAX_JSON_DEPTH)
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not {what} (a JSON {type(doc).__name__}, not an object)")
    try:
        model.model_validate(doc)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc']))}: {_msg(err)}" for err in e.errors(include_url=False)]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{path}: damaged: {'; '.join(problems[:3])}{more}") from None
    return doc


def _msg(err: dict) -> str:
    if err["type"] == "missing":
        return "missing"
    value = repr(err.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    if err["type"] == "string_pattern_mismatch" and err["loc"] == ("device",):
        return f"{value} is not a device (valid: cpu, cuda, cuda:N, mps)"
    return f"{err['msg']} (got {value})"


def read_suite(path: Path) -> dict:
    """A run directory's suite.yaml (the resolved suite, harness.suite.loader.Suite.resolved): read
    within the YAML limits, a mapping with a suite name and a list of experiments, each with an id."""
    from harness.suite.yamlfile import read_yaml

    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("suite"), str):
        raise UserError(f"{path}: not a run's suite.yaml (no `suite:` name at the top)")
    experiments = doc.get("experiments")
    if not isinstance(experiments, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str)
                                                    for e in experiments):
        raise UserError(f"{path}: not a run's resolved suite.yaml (`experiments` is not a list of experiments, "
                        f"each with an `id`)")
    return doc


def read_steps(path: Path):
    """A run's steps.csv (per-step metrics: harness.run.task.TaskContext.log) with exactly
    STEP_COLUMNS: texts, seed and step whole numbers, value a number (exactly as written: it is
    compared bit for bit by reproduce; NaN and inf are numbers a diverged run logs)."""
    import pandas as pd

    path = Path(path)
    jsonfile.check_file(path, MAX_BYTES["steps.csv"], "a steps.csv")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - not UTF-8, not CSV, empty: pandas and OS errors alike
        why = (str(e).splitlines() or [""])[0][:200]
        raise UserError(f"{path}: not a readable steps.csv ({type(e).__name__}: {why})") from None
    foreign = [str(c) for c in df.columns if c not in STEP_COLUMNS]
    missing = [c for c in STEP_COLUMNS if c not in df.columns]
    if foreign or missing:
        what = "; ".join([*([f"columns not in it: {names_text(foreign)}"] if foreign else []),
                          *([f"missing columns: {names_text(missing)}"] if missing else [])])
        raise UserError(f"{path}: not a harness steps.csv ({what}; valid: {', '.join(STEP_COLUMNS)})")
    df = df[list(STEP_COLUMNS)].copy()
    for name in STEP_COLUMNS[:-1]:  # a line with fewer fields than the header (cut short) leaves them empty
        missing = df[name].map(lambda v: not isinstance(v, str) or not v)
        if missing.any():
            i = int(missing.to_numpy().nonzero()[0][0])
            raise UserError(f"{path}: damaged steps.csv: line {i + 2}, column {name}: missing (a line cut short?)")
    for name in ("seed", "step"):
        df[name] = _numbers(df[name], path, name, int, "a whole number")
    df["value"] = _numbers(df["value"], path, "value", float, "a number")
    for name in ("experiment", "variant", "size", "metric"):
        df[name] = df[name].astype("string")
    return df


_INT = re.compile(r"^[+-]?[0-9]+$")


def _numbers(col, path: Path, name: str, kind, valid: str):
    import pandas as pd

    def parse(text: str):
        if kind is int:
            return int(text) if _INT.match(text) else None
        if text == "":
            return float("nan")
        try:
            return float(text)  # correctly rounded: the value exactly as written
        except ValueError:
            return None

    values = col.map(parse)
    bad = values.isna() if kind is int else values.map(lambda v: v is None)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise UserError(f"{path}: damaged steps.csv: line {i + 2}, column {name}: {col.iloc[i][:40]!r} is not {valid}")
    return values.astype("Int64" if kind is int else "float64") if len(values) else pd.Series([], dtype="float64")
