"""`python -m harness merge DIR...`: the shards of one suite -> one results table and report.

Each shard is a run directory made by `run --shard I/N` (suite.yaml: the whole resolved suite;
env.json: the commit; state.json: the shard and whether it finished). Before anything is written:

- every directory is the same suite (suite.yaml's name and experiments) at the same git commit,
  cut into the same number of shards N, as the first one; another one is *foreign*: exit 2 naming it;
- no shard is given twice (exit 2 naming both directories);
- every file read is validated (harness.run.runfiles): a damaged or foreign suite.yaml, state.json,
  env.json, results file or steps.csv (another column set, a value of the wrong type, a steps.csv
  naming an experiment its suite does not hold) is exit 2 naming the file, whether the directory
  was given or found below a folder: a damaged shard is not a missing one.

Then the rows of every shard are written as one table (in the suite's experiment order, each row's
`run_id` the merged directory's name, its `shard` column kept), with steps.csv, report.md and
report.html (plus a section on the shards), plots/ (harness.run.plots), suite.yaml, env.json (the first shard's) and merge.json. A missing shard, one
that did not finish (interrupted, crashed) or failed rows make the exit status 1, each named; what was
there is still merged.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import UserError
from harness.run import plots, report, results, rundir, runfiles
from harness.suite.shard import Shard, parse_shard

BAD = ("failed", "diverged")


@dataclass
class ShardRun:
    path: Path
    shard: Shard
    suite: dict  # suite.yaml: the whole resolved suite
    env: dict
    finished: bool

    @property
    def commit(self):
        return self.env.get("git_commit")


@dataclass
class MergeOutcome:
    dest: Path
    count: int  # N
    rows: int
    missing: list[int] = field(default_factory=list)  # shard indices with no run directory
    unfinished: list[ShardRun] = field(default_factory=list)
    failed_rows: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.missing or self.unfinished or self.failed_rows else 0

    def problems(self) -> list[str]:
        out = [f"shard {i}/{self.count} is missing" for i in self.missing]
        out += [f"shard {r.shard} did not finish ({r.path})" for r in self.unfinished]
        if self.failed_rows:
            out.append(f"{self.failed_rows} rows failed or diverged")
        return out


def find_shard_dirs(paths: list[Path]) -> list[Path]:
    """Each path that is a run directory (state.json + suite.yaml), else every one below it."""
    found = rundir.find_under(
        paths, "state.json", is_run=_is_run_dir,
        no_dir="merge {path}: no such directory; give shard run directories (made by run --shard I/N) or a "
               "folder holding them",
        none_below="merge {path}: no run directory in it or below it (looked for state.json and suite.yaml); "
                   "give shard run directories made by run --shard I/N")
    return list(dict.fromkeys(p.resolve() for p in found))


def _is_run_dir(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "suite.yaml").is_file()


def read_shard(path: Path) -> ShardRun:
    """A shard's suite.yaml, state.json and env.json, each validated (harness.run.runfiles): a
    damaged or foreign one is a UserError naming the file, before anything is written."""
    suite = runfiles.read_suite(path / "suite.yaml")
    state = runfiles.read_state(path / "state.json")
    env = runfiles.read_env(path / "env.json") if (path / "env.json").exists() else {}
    shard = parse_shard(state["shard"] if "shard" in state else "0/1", {},
                        flag=f"merge {path}: state.json shard")
    return ShardRun(path, shard, suite, env, state.get("finished") is True)


def read_tables(runs: list[ShardRun]) -> tuple[list, list[dict]]:
    """Each shard's results table (those that wrote one) and the records of its steps.csv, all read
    and validated before anything is written: a damaged, foreign or another schema's file is a
    UserError naming it, and so is a steps.csv naming an experiment its suite does not hold."""
    tables, steps = [], []
    for r in runs:
        if any((r.path / n).exists() for n in runfiles.RESULTS_FILES):
            tables.append((r, runfiles.read_results(r.path)))
        if (r.path / "steps.csv").exists():
            df = runfiles.read_steps(r.path / "steps.csv")
            ids = {e["id"] for e in r.suite["experiments"]}
            foreign = df.index[~df["experiment"].isin(ids)]
            if len(foreign):
                i = foreign[0]
                raise UserError(f"{r.path / 'steps.csv'}: line {i + 2} names experiment {df['experiment'][i]!r}, "
                                f"which its suite.yaml does not hold; a steps.csv from another run?")
            steps += [rundir.plain_row(s) for s in df.to_dict("records")]
    return tables, steps


def check(runs: list[ShardRun], count: int | None = None) -> tuple[int, list[int]]:
    """(N, missing shard indices); a foreign or duplicated shard is a UserError (exit 2)."""
    if not runs:
        raise UserError("merge: no shard run directories given")
    ref = runs[0]
    count = count or ref.shard.count
    seen: dict[int, ShardRun] = {}
    for r in runs:
        differs = _foreign(ref, r, count)
        if differs:
            raise UserError(f"merge {r.path}: a foreign shard: {differs} (compared with {ref.path}); "
                            f"merge only the shards of one suite, made at one commit with one --shard N")
        if r.shard.index in seen:
            raise UserError(f"merge: shard {r.shard} is given twice: {seen[r.shard.index].path} and {r.path}; "
                            f"give each shard once (e.g. drop the one that was rerun)")
        seen[r.shard.index] = r
    return count, [i for i in range(count) if i not in seen]


def _foreign(ref: ShardRun, r: ShardRun, count: int) -> str:
    if r.suite.get("suite") != ref.suite.get("suite"):
        return f"suite {r.suite.get('suite')!r}, not {ref.suite.get('suite')!r}"
    if r.suite.get("experiments") != ref.suite.get("experiments"):
        return "its resolved suite (suite.yaml) differs: another suite file, --seed or -k"
    if r.commit != ref.commit:
        return f"git commit {r.commit}, not {ref.commit}"
    if r.shard.count != count:
        return f"shard {r.shard} of {r.shard.count} shards, not of {count}"
    return ""


def default_dest(out_root: Path, suite_name: str) -> Path:
    stamp = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-merged-{secrets.token_hex(3)}"
    return Path(out_root) / suite_name / stamp


def merge(paths: list[Path], dest: Path | None = None, out_root: Path = Path("results"),
          count: int | None = None) -> MergeOutcome:
    """Check the shard directories under `paths`, then write the merged run into `dest` (default: a
    new <out_root>/<suite>/<UTC time>-merged-<id>/)."""
    runs = sorted((read_shard(p) for p in find_shard_dirs(paths)), key=lambda r: (r.shard.index, str(r.path)))
    count, missing = check(runs, count)
    tables, steps = read_tables(runs)
    return write(runs, tables, dest or default_dest(out_root, runs[0].suite["suite"]), count, missing, steps)


def write(runs: list[ShardRun], tables: list, dest: Path, count: int, missing: list[int],
          steps: list[dict]) -> MergeOutcome:
    import pandas as pd

    order = {e["id"]: i for i, e in enumerate(runs[0].suite.get("experiments") or [])}
    rows = [rundir.plain_row(row) | {"run_id": dest.name} for _, df in tables for row in df.to_dict("records")]
    rows.sort(key=lambda row: order.get(row["experiment"], len(order)))  # stable: a shard's own order kept
    outcome = MergeOutcome(dest, count, len(rows), missing, [r for r in runs if not r.finished],
                           sum(row["status"] in BAD for row in rows))
    dest.mkdir(parents=True, exist_ok=True)
    df = results.save(rows, dest)
    if steps:
        results.atomic_write(dest / "steps.csv", lambda p: pd.DataFrame(steps).to_csv(p, index=False))
    env = runs[0].env | {"shard": None, "merged_from": [str(r.path) for r in runs]} | _span(runs)
    results.atomic_write_json(dest / "env.json", env)
    results.atomic_write_text(dest / "suite.yaml", (runs[0].path / "suite.yaml").read_text(encoding="utf-8"))
    results.atomic_write_json(dest / "merge.json", {
        "suite": runs[0].suite.get("suite"), "git_commit": runs[0].commit, "shards": count,
        "runs": {str(r.shard): {"path": str(r.path), "finished": r.finished} for r in runs},
        "missing": [f"{i}/{count}" for i in missing], "rows": len(rows), "exit_code": outcome.exit_code})
    plots.write(runs[0].suite.get("experiments") or [], rows, steps, dest)  # as the runner: before report.md
    report.write_reports(dest, df, env, steps, extra=_shards_section(runs, tables, outcome))
    return outcome


def _span(runs: list[ShardRun]) -> dict:
    """The first shard's start and the last one's end (ISO-8601 UTC strings, comparable as text)."""
    starts = [r.env["started_at"] for r in runs if r.env.get("started_at")]
    ends = [r.env["finished_at"] for r in runs if r.env.get("finished_at")]
    return {"started_at": min(starts) if starts else None, "finished_at": max(ends) if ends else None}


def _shards_section(runs, tables, outcome: MergeOutcome) -> str:
    rows = {str(r.path): len(df) for r, df in tables}
    lines = ["", f"## Shards ({len(runs)} of {outcome.count} merged)", "",
             "| shard | rows | finished | run directory |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.shard} | {rows.get(str(r.path), 0)} | {'yes' if r.finished else '**no**'} | `{r.path}` |"
              for r in runs]
    lines += [f"| {i}/{outcome.count} | — | **missing** | |" for i in outcome.missing]
    return "\n".join(lines) + "\n"
