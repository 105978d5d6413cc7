"""YAML suite -> validated, frozen experiment specs, with matrix expansion.

Everything a suite can get wrong is found here, before anything runs, and reported as
`suites/x.yaml: experiments[0].variants[1]: unknown variant 'vectorised' ...` (exit 2).

    suite = load_suite("suites/kernels.yaml", seed=None, select="corr")
    for exp in suite.experiments: exp.id, exp.spec, exp.point
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.core.errors import UserError
from harness.core.kinds import KINDS, NAME_PATTERN, SpecBase, pydantic_problems
from harness.core.registry import unknown_name_message
from harness.suite import overrides as steer
from harness.suite.names import select_names
from harness.suite.yamlfile import read_yaml

MAX_ERRORS_SHOWN = 8
# Experiments after matrix expansion, unless --max-experiments raises it. The shipped suites have
# 4-12; a kernel experiment runs for seconds at the least and a training one for minutes, and each
# is MLflow child runs, so 1,000 is already hours to days of work and a thousand-run MLflow view.
# Loading 1,000 takes about a second; a larger study is deliberate (--max-experiments N).
MAX_EXPERIMENTS = 1_000
NOTE_LIMIT = 2000  # characters of a suite's note
NOTE_MARK = re.compile(r"^\(written for the suite as declared; this run changed it with [^)]*\) ")
SEED_LIMIT = 2**63  # seeds are stored in an Int64 results column (and torch takes 64 bits)


class SuiteError(UserError):
    """Every problem found in one suite file, one `file: location: message` line each."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path, self.problems = str(path), problems
        lines = [f"{self.path}: {loc}: {msg}" if loc else f"{self.path}: {msg}" for loc, msg in problems]
        if len(lines) > MAX_ERRORS_SHOWN:
            lines = lines[:MAX_ERRORS_SHOWN] + [f"... and {len(lines) - MAX_ERRORS_SHOWN} more"]
        super().__init__("\n".join(lines))


class _SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = Field(pattern=NAME_PATTERN, max_length=80)
    description: str = ""
    note: str = ""  # shown in the run's report headline and at the end of `run`; at most NOTE_LIMIT
    defaults: dict[str, Any] = {}
    experiments: list[dict[str, Any]] = Field(min_length=1)
    matrix: dict[str, list[Any]] = {}
    overrides: list[str] = []  # KEY=VALUE / NAME.KEY=VALUE, applied like --set (harness.suite.overrides)
    source: str = ""  # a run's resolved suite.yaml: the file it was resolved from (informational)

    @field_validator("note")
    @classmethod
    def _note_length(cls, note: str) -> str:  # the mark a run adds (_marked_note) is not counted
        if len(NOTE_MARK.sub("", note)) > NOTE_LIMIT:
            raise ValueError(f"String should have at most {NOTE_LIMIT} characters (got {len(note):,})")
        return note


@dataclass(frozen=True)
class Experiment:
    """One expanded experiment: a spec at one matrix point."""

    id: str  # "corr2d", or "corr2d[seed=1]" under a matrix
    spec: SpecBase  # the kind's spec model
    point: dict[str, Any]

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.spec.model_dump_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    experiments: list[Experiment]
    overrides: tuple[str, ...] = ()  # the overrides applied (--set, --seed, the file's own), as KEY=VALUE
    note: str = ""  # what a reader of the results must know (the smoke suite: accuracy is a pipeline check)

    def resolved(self) -> dict:
        """The suite as it will run: every default and override applied, the matrix expanded. Its
        `overrides` record what changed the file's values (applying them again changes nothing)."""
        return {"suite": self.name, "description": self.description, **({"note": self.note} if self.note else {}),
                "source": str(self.path), **({"overrides": list(self.overrides)} if self.overrides else {}),
                "experiments": [{"id": e.id, **e.spec.model_dump(mode="json")} for e in self.experiments]}


def load_suite(path: str | Path, *, seed: int | None = None, select: str | None = None,
               max_experiments: int | None = None, overrides: list[str] | None = None) -> Suite:
    """Read, validate and expand a suite. `overrides` (--set: "epochs=1", "lenet.lr=0.05") change
    fields before validation (harness.suite.overrides); `seed` overrides every experiment's seed
    (and replaces a `seed` axis of the matrix); `select` (-k) keeps the experiment of that name, or
    those a glob matches, or those whose name contains it (harness.suite.names); more than
    `max_experiments` (default MAX_EXPERIMENTS) after expansion is refused before anything is
    expanded."""
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise UserError(f"--seed {seed}: a seed must be >= 0 and below 2**63 ({SEED_LIMIT:,})")
    if max_experiments is None:
        max_experiments = MAX_EXPERIMENTS
    elif max_experiments < 1:
        raise UserError(f"--max-experiments {max_experiments}: must be at least 1 (default {MAX_EXPERIMENTS:,})")
    load_kinds()
    path = Path(path)
    raw = _read_yaml(path)
    try:
        top = _SuiteFile.model_validate(raw)
    except ValidationError as e:
        raise SuiteError(path, pydantic_problems(e, prefix="", model=_SuiteFile)) from None

    problems = _check_names(top) + _check_keys(top) + _check_ids(top)
    changes, used = _overrides(path, top, overrides, seed, problems), set()
    names = [str(e.get("name", "")) for e in top.experiments]
    try:
        chosen = set(names) if not select else select_names(select, names)
    except UserError as e:  # the expression does not parse, or a term matches no name
        raise UserError(f"{path}: {e}") from None
    problems += _unselected(top, changes, chosen, select)
    experiments: list[Experiment] = []
    too_many = _check_count(top, chosen, changes, max_experiments)
    if too_many:  # nothing is expanded: report it with the file-level problems found so far
        raise SuiteError(path, problems + too_many)
    for i, exp in enumerate(top.experiments):
        if names[i] not in chosen:
            continue
        where = f"experiments[{i}]"
        kind = exp.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            problems.append((f"{where}.kind", "missing" if kind is None else unknown_name_message("kind", str(kind), list(KINDS))))
            continue
        model = KINDS.get(kind).spec
        given_id = exp.get("id")  # a resolved suite (a run's suite.yaml) names each experiment's id
        exp = {k: v for k, v in exp.items() if k != "id"}
        mine = steer.applying(changes, exp.get("name"), model.model_fields)  # key -> Override
        used.update(map(id, mine.values()))
        base = {k: v for k, v in top.defaults.items() if k in model.model_fields} | exp \
            | {k: o.value for k, o in mine.items()}
        axes = {k: v for k, v in top.matrix.items() if k in model.model_fields and k not in mine}
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            spec, errs = _validate_one(model, base | point, where, point)
            problems += steer.relabel(errs, where, mine)
            if spec is not None:
                label = ",".join(f"{k}={v}" for k, v in point.items())
                exp_id = f"{spec.name}[{label}]" if point else spec.name
                experiments.append(Experiment(_given_id(given_id, seed) if given_id else exp_id, spec, point))
    experiments = list({(e.id, e.spec_hash): e for e in experiments}.values())  # --seed on a resolved seed axis
    if problems:
        raise SuiteError(path, _dedupe(problems))
    if not experiments:  # every term matched, the expression none (-k 'a and b')
        names = ", ".join(str(e.get("name")) for e in top.experiments)
        raise UserError(f"{path}: -k {select!r} selects no experiment: its terms match names, the expression "
                        f"none (names: {names})")
    applied = [o for o in changes if id(o) in used]
    return Suite(path, top.suite, top.description, experiments, tuple(dict.fromkeys(o.text for o in applied)),
                 note=_marked_note(top.note, applied))


def _marked_note(note: str, applied: list[steer.Override]) -> str:
    """The suite's note, marked when --set changed the suite it was written for ("on 512 images for 2
    epochs" is not true of a run with --set epochs=30): kept rather than dropped, since the rest of
    it (how to read the numbers, what to run instead) usually still holds. --seed changes no size and
    leaves it alone. Marked once: a run's suite.yaml keeps the mark, and --set on it again renews it."""
    if not note or not any(o.layer == steer.COMMAND_LINE and not o.sole for o in applied):
        return note
    changed = ", ".join(f"--set {o.text}" for o in applied if not o.sole)
    return f"(written for the suite as declared; this run changed it with {changed}) " + NOTE_MARK.sub("", note)


def _overrides(path: Path, top: _SuiteFile, given: list[str] | None, seed: int | None,
               problems: list) -> list[steer.Override]:
    """The file's `overrides:` and the command line's (--seed, --set), resolved against the
    suite's experiments; any problem with them is reported at once, with the file's own so far."""
    mine, bad = steer.parse(top.overrides, steer.FILE)
    cli, bad_cli = steer.parse(list(given or []))
    changes, bad_names = steer.resolve(mine + ([steer.seed_override(seed)] if seed is not None else []) + cli,
                                       top.experiments, lambda k: KINDS.get(k).spec.model_fields
                                       if isinstance(k, str) and k in KINDS else None)
    if bad or bad_cli or bad_names:
        raise SuiteError(path, problems + bad + bad_cli + bad_names)
    return changes


def _unselected(top: _SuiteFile, changes: list[steer.Override], chosen: set[str],
                select: str | None) -> list[tuple[str, str]]:
    """A command-line override that -k makes a no-op, named: NAME.KEY of an experiment -k leaves
    out, or KEY that no selected experiment has. (The file's own overrides may name experiments
    a selection leaves out: a run's suite.yaml records the overrides of the whole suite.)"""
    if not select:
        return []
    fields = {str(e.get("name", "")): KINDS.get(k).spec.model_fields for e in top.experiments
              if isinstance(k := e.get("kind"), str) and k in KINDS}
    kept = ", ".join(n for n in fields if n in chosen)
    problems = []
    for o in changes:
        if o.layer != steer.COMMAND_LINE:
            continue
        if o.name is not None and o.name not in chosen:
            problems.append((o.label, f"experiment {o.name!r} is not selected by -k {select!r} (selected: {kept}), "
                             f"so this would change nothing; drop it, or select it: -k {shlex.quote(select + ' or ' + o.name)}"))
        elif o.name is None and not any(o.key in fields.get(n, {}) for n in chosen):
            problems.append((o.label, f"no experiment selected by -k {select!r} (selected: {kept}) has a field "
                             f"{o.key!r}, so this would change nothing; drop it"))
    return problems


def _read_yaml(path: Path) -> dict:
    raw = read_yaml(path)  # within limits: size, depth, aliases, duplicate keys (suite/yamlfile.py)
    if raw is None:
        raise UserError(f"{path}: the file is empty; a suite needs `suite:` and `experiments:` "
                        f"(see suites/kernels.yaml)")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a suite is a YAML mapping with `suite:` and `experiments:`, "
                        f"not a {type(raw).__name__}")
    return raw


def _check_count(top: _SuiteFile, chosen: set[str], changes: list, limit: int) -> list[tuple[str, str]]:
    """The experiments the matrix would make, counted (the product of the axes' lengths per
    experiment, less the axes an override replaces) before anything is expanded: a huge matrix is
    refused at once."""
    total, counted = 0, set()
    for exp in top.experiments:
        kind = exp.get("kind")
        if str(exp.get("name", "")) not in chosen or not isinstance(kind, str) or kind not in KINDS:
            continue
        fields = KINDS.get(kind).spec.model_fields
        mine = steer.applying(changes, exp.get("name"), fields)
        axes = {k: v for k, v in top.matrix.items() if k in fields and k not in mine}
        counted.update(axes)
        total += math.prod(len(v) for v in axes.values())
    if total <= limit:
        return []
    axes = ", ".join(f"{k}: {len(v):,} value{'s' if len(v) != 1 else ''}" for k, v in top.matrix.items()
                     if k in counted)
    return [("matrix", f"{total:,} experiments after expansion ({axes}), more than the limit of "
             f"{limit:,}; shrink the matrix, or raise the limit with --max-experiments {total}")]


def _check_names(top: _SuiteFile) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    problems = []
    for i, exp in enumerate(top.experiments):
        if "id" in exp:  # a resolved suite: one entry per matrix point, same names (_check_ids: unique ids)
            continue
        name = exp.get("name")
        if isinstance(name, str) and name in seen:
            problems.append((f"experiments[{i}].name", f"duplicate experiment name {name!r} "
                             f"(first used by experiments[{seen[name]}])"))
        seen.setdefault(name, i)
    return problems


def _check_ids(top: _SuiteFile) -> list[tuple[str, str]]:
    """`id` is read from a resolved suite (what a run writes into its suite.yaml, `Suite.resolved`):
    the experiment's name, or the name and the matrix point it was expanded at, `name[field=value,...]`;
    unique, and in a suite without a matrix (the resolved form has none)."""
    problems, seen = [], {}
    for i, exp in enumerate(top.experiments):
        if "id" not in exp:
            continue
        given, name, where = exp["id"], exp.get("name"), f"experiments[{i}].id"
        if top.matrix:
            problems.append((where, "an experiment id is read only from a resolved suite, which has no `matrix`; "
                                    "remove `id` (expansion names the experiments) or the matrix"))
        elif not isinstance(given, str) or not isinstance(name, str) or not (
                given == name or (given.startswith(f"{name}[") and given.endswith("]"))):
            problems.append((where, f"{given!r} is not the experiment's name ({name!r}) or the name with its "
                                    f"matrix point ({name}[field=value,...]); remove `id` to let expansion name it"))
        elif given in seen:
            problems.append((where, f"duplicate experiment id {given!r} (first used by experiments[{seen[given]}])"))
        else:
            seen[given] = i
    return problems


def _given_id(given: str, seed: int | None) -> str:
    """A resolved experiment's id; under --seed without its `seed=` part, as expansion drops a seed axis."""
    if seed is None or "[" not in given:
        return given
    name, label = given[:-1].split("[", 1)
    rest = [p for p in re.split(r",(?=\w+=)", label) if not p.startswith("seed=")]
    return f"{name}[{','.join(rest)}]" if rest else name


def _check_keys(top: _SuiteFile) -> list[tuple[str, str]]:
    """`defaults` and `matrix` keys must be fields of some experiment kind used in the suite."""
    kinds = {k for e in top.experiments if isinstance(k := e.get("kind"), str)} & set(KINDS)
    fields = sorted({f for k in kinds for f in KINDS.get(k).spec.model_fields} - {"kind", "name"})
    problems = []
    for section in ("defaults", "matrix"):
        for key in getattr(top, section):
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
                problems.append((f"{section}.{key}", "not a field of any experiment in this suite"
                                 + (f"; did you mean {close[0]!r}?" if close else f" (fields: {', '.join(fields)})")))
    for key, values in top.matrix.items():
        if not values:
            problems.append((f"matrix.{key}", "an axis needs at least one value"))
    return problems


def _validate_one(model: type[SpecBase], fields: dict, where: str, point: dict):
    suffix = f" (matrix point {point})" if point else ""
    try:
        spec = model.model_validate(fields)
    except ValidationError as e:
        return None, [(loc, msg + suffix) for loc, msg in pydantic_problems(e, prefix=where, model=model)]
    errs = KINDS.get(spec.kind).check(spec, where)
    return (None if errs else spec), errs


def load_kinds() -> None:
    """Import every `harness.<package>.kind` module: each registers its experiment kinds
    (harness.core.kinds). A package that adds a kind is found without a change here."""
    import importlib
    import pkgutil

    import harness

    for info in pkgutil.iter_modules(harness.__path__, "harness."):
        if info.ispkg and (Path(info.module_finder.path) / info.name.split(".")[1] / "kind.py").is_file():
            importlib.import_module(f"{info.name}.kind")


def _dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))
