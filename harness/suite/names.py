"""Finding a suite and its experiments by name, as the command line gives them.

    find_suite("smoke")                      # Path("suites/smoke.yaml"), else the repository's suites/smoke.yaml
    select_names("res*", ["lenet", "resnet18"])   # {"resnet18"}

`-k PATTERN` (select_names): an experiment named exactly PATTERN alone, if there is one; else, when
PATTERN has a glob character (* ? [), every name the glob matches whole (fnmatch, case-sensitive);
else every name containing PATTERN. Names are the suites' `name:`s (a matrix's points share theirs).
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from harness.core.errors import UserError
from harness.core.registry import unknown_name_message

SUFFIXES = (".yaml", ".yml")
BARE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a suite name, as NAME_PATTERN
GLOB_CHARS = "*?["


def suite_dirs() -> list[Path]:
    """Where a bare suite name is looked up: ./suites, then the suites/ of the repository holding
    this harness (an editable install or a checkout; absent for an installed wheel)."""
    import harness

    here, repo = Path("suites"), Path(harness.__file__).resolve().parents[1] / "suites"
    return [here] + ([repo] if not here.is_dir() or here.resolve() != repo else [])


def find_suite(arg: Path | str) -> Path:
    """SUITE as the command line gives it. An existing file, or anything with a path separator or a
    .yaml/.yml suffix, is itself (a missing file is reported where it is read); a bare name NAME is
    NAME.yaml in suite_dirs(); not found there: UserError listing the suites there are."""
    text = str(arg)
    path = Path(text)
    if path.is_file() or not BARE.fullmatch(text) or path.suffix in SUFFIXES:
        return path
    for folder in suite_dirs():
        for suffix in SUFFIXES:
            if (folder / f"{text}{suffix}").is_file():
                return folder / f"{text}{suffix}"
    if path.exists():  # a directory of that name, and no suite: reported where it is read
        return path
    known = sorted({p.stem for d in suite_dirs() if d.is_dir() for s in SUFFIXES for p in d.glob(f"*{s}")})
    where = " and ".join(str(d) if d.is_absolute() else f"./{d}" for d in suite_dirs())
    if not known:
        raise UserError(f"{text}: no such suite file, and no suites in {where}; give a suite file's path")
    raise UserError(f"{text}: no such suite file; as a name: {unknown_name_message('suite', text, known)} "
                    f"(looked in {where}); give a suite file's path or one of these names")


def select_names(pattern: str, names: list[str]) -> set[str]:
    """The names `-k PATTERN` keeps (the rule is in the module docstring)."""
    if pattern in names:
        return {pattern}
    if any(c in pattern for c in GLOB_CHARS):
        return {n for n in names if fnmatch.fnmatchcase(n, pattern)}
    return {n for n in names if pattern in n}
