"""`--set KEY=VALUE` and `--set NAME.KEY=VALUE`: a suite's fields changed from the command line.
harness.suite.loader applies them (`load_suite(..., overrides=["epochs=1", "lenet.lr=0.05"])`) and
validates the result exactly as it validates the file; this module parses, resolves and labels them.

The rules:
- `KEY=VALUE` sets KEY for every experiment whose kind has that field (like `defaults:`, but over the
  experiments' own values); a key that no experiment of the suite has is refused. `NAME.KEY=VALUE`
  sets it for the experiment named NAME only (every matrix point of it) and wins over `KEY=VALUE`
  there. NAME may contain dots: the field is what follows the longest experiment name.
- A key that is a matrix axis replaces the axis (for NAME only, with NAME.KEY), as `--seed` always has.
- VALUE is YAML, as it would be written in the suite: 0.05, null, [32, 32], {arch: [[1, 16], [1, 32]]}.
- No nested keys: `model_args.arch=...` is refused; set the whole field, `model_args={arch: ...}`.
  `name` and `kind` cannot be set; a KEY or NAME.KEY given twice is refused.
- Two layers: the suite file's `overrides:` list first (a run's suite.yaml records the overrides
  that were applied there, so loading it again changes nothing), then the command line's, which
  wins; `--seed N` is the command line's `seed=N`, and refuses any other `seed` override beside it.
- A problem is named by its flag (`--set lenet.lr=-1`), in place of the field's location.
- With -k, a command-line override that changes no selected experiment is refused (the loader's
  `_unselected`): it would otherwise be silently unused.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from typing import Any

from harness.core.errors import UserError
from harness.core.registry import unknown_name_message
from harness.suite.yamlfile import load_text

FILE, COMMAND_LINE = 0, 1
TARGET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
FIXED = ("name", "kind")  # they identify an experiment (-k and NAME.KEY find it by name)
EXAMPLE = "e.g. --set epochs=1 --set lenet.lr=0.05"


@dataclass(frozen=True)
class Override:
    target: str  # left of '=': "epochs", "lenet.lr"
    value: Any
    text: str  # "lenet.lr=0.05", as suite.yaml records it
    label: str  # how errors name it: "--set lenet.lr=0.05", "--seed 3", "overrides[0] (epochs=1)"
    layer: int = COMMAND_LINE
    sole: bool = False  # --seed: no other override of its layer may set the same key
    name: str | None = None  # the experiment, or None for all (set by resolve)
    key: str = ""


def parse(texts: list[str], layer: int = COMMAND_LINE) -> tuple[list[Override], list[tuple[str, str]]]:
    """`KEY=VALUE` strings -> Overrides, and (label, message) for each that is not one."""
    out, problems = [], []
    for j, text in enumerate(texts):
        label = f"--set {text}" if layer == COMMAND_LINE else f"overrides[{j}] ({text})"
        target, eq, raw = str(text).partition("=")
        if not eq or not TARGET.fullmatch(target.strip()):
            problems.append((label, f"not KEY=VALUE or NAME.KEY=VALUE ({EXAMPLE})"))
            continue
        try:
            value = load_text(raw, "VALUE", marks=False)
        except UserError as e:
            problems.append((label, str(e)))
            continue
        out.append(Override(target.strip(), value, f"{target.strip()}={raw.strip()}", label, layer))
    return out, problems


def seed_override(seed: int) -> Override:
    return Override("seed", seed, f"seed={seed}", f"--seed {seed}", COMMAND_LINE, sole=True)


def resolve(overrides: list[Override], experiments: list[dict], fields_of) -> tuple[list[Override], list]:
    """Each override's experiment and key, checked against the suite's experiments (raw dicts;
    `fields_of(kind)` -> that kind's field names, or None for an unknown kind)."""
    names = [n for e in experiments if isinstance(n := e.get("name"), str)]
    kinds = {n: fields_of(e.get("kind")) for e in experiments if isinstance(n := e.get("name"), str)}
    every = sorted({f for fs in kinds.values() if fs for f in fs} - set(FIXED))
    done, problems, seen = [], [], {}
    for o in overrides:
        owner = max((n for n in names if o.target.startswith(n + ".")), key=len, default=None)
        key = o.target[len(owner) + 1:] if owner else o.target
        problem = _problem(o, owner, key, names, kinds, every)
        if problem is None and (o.layer, owner, key) in seen:
            problem = f"{o.target} is already set by {seen[o.layer, owner, key].label}; give it once"
        sole = next((s for s in overrides if s.sole and s.layer == o.layer and s is not o), None)
        if problem is None and sole is not None and key == sole.target:
            problem = f"{sole.label} sets every experiment's {key}; give one of them"
        if problem:
            problems.append((o.label, problem))
        else:
            seen[o.layer, owner, key] = o
            done.append(replace(o, name=owner, key=key))
    return done, problems


def _problem(o: Override, owner, key: str, names: list[str], kinds: dict, every: list[str]) -> str | None:
    if "." in key:
        head = key.split(".")[0]
        if owner is None and head not in every:
            return unknown_name_message("experiment", o.target.rsplit(".", 1)[0], names)
        return (f"nested keys are not supported; set the whole field, e.g. "
                f"--set {owner + '.' if owner else ''}{head}={{...}} (the value replaces all of {head})")
    if key in FIXED:
        return f"an experiment's {key} cannot be set from the command line (settable: {', '.join(every)})"
    if owner is None:
        return None if key in every else _no_field("no experiment in this suite has a field", key, every)
    fields = kinds.get(owner)
    if fields is None or key in fields:  # an unknown kind is reported by the suite's own checks
        return None
    return _no_field(f"experiment {owner!r} has no field", key, sorted(set(fields) - set(FIXED)))


def _no_field(sentence: str, key: str, fields: list[str]) -> str:
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    return f"{sentence} {key!r}" + (f"; did you mean {close[0]!r}?" if close else f" (fields: {', '.join(fields)})")


def applying(overrides: list[Override], name: object, fields) -> dict[str, Override]:
    """key -> the override that sets it for the experiment `name` whose kind has `fields`: the
    command line over the file, and within a layer NAME.KEY over KEY."""
    chosen: dict[str, Override] = {}
    for layer in (FILE, COMMAND_LINE):
        for named in (False, True):
            for o in overrides:
                if o.layer == layer and o.key in fields and (o.name == name if named else o.name is None):
                    chosen[o.key] = o
    return chosen


def relabel(problems: list[tuple[str, str]], where: str, chosen: dict[str, Override]) -> list[tuple[str, str]]:
    """An experiment's problems with the location of an overridden field replaced by its flag."""
    out = []
    for loc, msg in problems:
        for key, o in chosen.items():
            head = f"{where}.{key}"
            if loc == head or loc.startswith((head + ".", head + "[")):
                loc = o.label if loc == head else f"{o.label}: {loc[len(where) + 1:]}"
                break
        out.append((loc, msg))
    return out
