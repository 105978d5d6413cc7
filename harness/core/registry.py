"""One small registry, used by kernels and models: name -> object, listing, did-you-mean.

    KERNELS = Registry("kernel")
    KERNELS.register("corr2d", family)
    KERNELS.get("corr2D")  # UserError: unknown kernel 'corr2D' (known: ...); did you mean 'corr2d'?
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Generic, Iterator, TypeVar

from harness.core.errors import UserError

T = TypeVar("T")


def unknown_name_message(what: str, name: object, known: list[str]) -> str:
    """"unknown kernel 'x' (known: a, b); did you mean 'y'?" -- shared by registries and suites."""
    msg = f"unknown {what} {name!r} (known: {', '.join(known)})"
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return msg + (f"; did you mean {close[0]!r}?" if close else "")


class Registry(Generic[T]):
    """Insertion-ordered name -> entry mapping; registering a name twice is a bug."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(unknown_name_message(self.what, name, self.names())) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names, filtered with a shell wildcard as timm's list_models("res*")."""
        return [n for n in self._entries if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
