"""Finding a suite and its experiments by name, as the command line gives them.

    find_suite("smoke")                      # Path("suites/smoke.yaml"), else the repository's suites/smoke.yaml
    select_names("res*", ["lenet", "resnet18"])   # {"resnet18"}

`-k EXPRESSION` (select_names) is pytest's -k grammar: terms joined by `or`, `and`, `not` and
parentheses (`-k 'lenet or res*'`, `-k 'res* and not resnext'`). A term selects the experiment
named exactly that alone, if there is one; else, when it has a glob character (* ? [), every name
the glob matches whole (fnmatch, case-sensitive); else every name containing it. A term that
matches no name is refused with the closest name (a typo would otherwise drop an experiment
silently). Names are the suites' `name:`s (a matrix's points share theirs).
"""
from __future__ import annotations

import difflib
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


def select_names(expression: str, names: list[str]) -> set[str]:
    """The names `-k EXPRESSION` keeps (the grammar is in the module docstring); UserError for an
    expression that does not parse or a term that matches no name, naming it."""
    return _Parser(expression, names).parse()


def term_names(term: str, names: list[str]) -> set[str]:
    """The names one term selects: the exact name alone, else a whole-name glob, else a substring."""
    if term in names:
        return {term}
    if any(c in term for c in GLOB_CHARS):
        return {n for n in names if fnmatch.fnmatchcase(n, term)}
    return {n for n in names if term in n}


KEYWORDS = ("or", "and", "not")
TOKEN = re.compile(r"\s*(?:(\()|(\))|([^\s()]+))")
GRAMMAR = "terms joined by or, and, not and parentheses, e.g. -k 'lenet or res*', -k 'res* and not resnext'"


class _Parser:
    """Recursive descent over: expr = and ('or' and)*; and = not ('and' not)*;
    not = 'not' not | '(' expr ')' | TERM."""

    def __init__(self, expression: str, names: list[str]):
        self.text, self.names = expression, names
        self.tokens: list[tuple[str, int]] = []  # (token, column)
        pos = 0
        while expression[pos:].strip():
            m = TOKEN.match(expression, pos)
            self.tokens.append((m.group(m.lastindex), m.start(m.lastindex) + 1))
            pos = m.end()
        self.i = 0

    def parse(self) -> set[str]:
        if not self.tokens:
            raise self._error("is empty; give " + GRAMMAR)
        chosen = self._or()
        if self.i < len(self.tokens):
            token, col = self.tokens[self.i]
            raise self._error(f"unexpected {token!r} at column {col}; " + GRAMMAR)
        return chosen

    def _peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def _or(self) -> set[str]:
        chosen = self._and()
        while self._peek() == "or":
            self.i += 1
            chosen = chosen | self._and()
        return chosen

    def _and(self) -> set[str]:
        chosen = self._not()
        while self._peek() == "and":
            self.i += 1
            chosen = chosen & self._not()
        return chosen

    def _not(self) -> set[str]:
        token = self._peek()
        if token is None:
            after = f" after {self.tokens[-1][0]!r}" if self.tokens else ""
            raise self._error(f"expected a name or '('{after} at the end; " + GRAMMAR)
        col = self.tokens[self.i][1]
        self.i += 1
        if token == "not":
            return set(self.names) - self._not()
        if token == "(":
            chosen = self._or()
            if self._peek() != ")":
                raise self._error(f"the '(' at column {col} is not closed; " + GRAMMAR)
            self.i += 1
            return chosen
        if token == ")" or token in KEYWORDS:
            raise self._error(f"expected a name or '(' at column {col}, got {token!r}; " + GRAMMAR)
        chosen = term_names(token, self.names)
        if not chosen:
            raise UserError(no_match(self.text, token, self.names))
        return chosen

    def _error(self, message: str) -> UserError:
        return UserError(f"-k {self.text!r}: {message}")


def no_match(expression: str, term: str, names: list[str]) -> str:
    """`-k 'lenett' selects no experiment (names: ...); did you mean 'lenet'?` (the term named
    when it is one of several)."""
    known = list(dict.fromkeys(names))
    close = difflib.get_close_matches(term, known, n=1, cutoff=0.6)
    which = "" if term == expression.strip() else f": {term!r}"
    return (f"-k {expression!r}{which} selects no experiment (names: {', '.join(known)})"
            + (f"; did you mean {close[0]!r}?" if close else ""))
