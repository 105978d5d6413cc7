"""What a kernel family is: a validated size grid point (`Case`), inputs, a float64 reference,
and named variants that compute the same thing in different ways.

A family module builds one `Family` and registers it in `KERNELS`; the runner never needs to
know which family it is timing. Variants are plain functions `fn(case, *inputs) -> Tensor`.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict

from harness.core.registry import Registry

Pair = tuple[int, int]


class Case(BaseModel):
    """One point of an experiment's `sizes` grid. Subclasses validate what is possible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def flops(self) -> int:
        """Arithmetic operations of one call (a multiply-add counts 2; a pooling compare 1)."""
        raise NotImplementedError

    def loop_iters(self) -> int:
        """Python-level inner iterations of the book's loop variant: what makes it slow."""
        raise NotImplementedError

    def label(self) -> str:
        """Short, stable, human-readable name of this point, e.g. 'in=32x32 k=3x3'."""
        raise NotImplementedError

    def tensor_elements(self) -> int | None:
        """Elements of one call's inputs and output together: what the load-time memory check
        (kernels/kind.py) multiplies by bytes per element. None: not known, not checked."""
        return None


@dataclass(frozen=True)
class Variant:
    name: str
    fn: Callable[..., torch.Tensor]
    python_loop: bool = False  # a Python loop over output pixels: capped by loop_max_iters

    @functools.cached_property  # sources are read once per process (frozen dataclass: no __setattr__)
    def code_hash(self) -> str:
        """sha256 of the variant's source and of every harness function it calls, transitively:
        results of changed code are not comparable (as asv does)."""
        h = hashlib.sha256()
        for fn in _harness_callees(self.fn):
            h.update(inspect.getsource(fn).encode())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Family:
    name: str
    doc: str
    case: type[Case]
    make_inputs: Callable[[Case, torch.Generator, torch.dtype, torch.device], tuple[torch.Tensor, ...]]
    reference: Callable[..., torch.Tensor]  # reference(case, *inputs) in float64 on the CPU
    variants: dict[str, Variant] = field(default_factory=dict)

    def variant(self, name: str, *, python_loop: bool = False):
        """Decorator: register `fn(case, *inputs)` as variant `name` of this family."""

        def deco(fn):
            if name in self.variants:
                raise ValueError(f"variant {self.name}.{name} is registered twice")
            self.variants[name] = Variant(name, fn, python_loop)
            return fn

        return deco


def _harness_callees(fn) -> list:
    """`fn` and the harness functions it names, transitively (through comprehensions and
    `module.function` references too), in a stable order. Functions of `fn`'s own module count
    as harness code, so a variant registered by a plugin (HARNESS_PLUGINS) is hashed too."""
    seen: dict[str, object] = {}
    stack = [fn]
    while stack:
        f = stack.pop()
        key = f"{f.__module__}.{f.__qualname__}"
        module = f.__module__ or ""
        if key in seen or not (module.startswith("harness") or module == fn.__module__):
            continue
        seen[key] = f
        names = _code_names(f.__code__)
        for name in names:
            g = f.__globals__.get(name)
            if inspect.ismodule(g):
                stack += [a for n in names if inspect.isfunction(a := getattr(g, n, None))]
            elif inspect.isfunction(g):
                stack.append(g)
    return [seen[k] for k in sorted(seen)]


def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):  # comprehensions, lambdas, nested functions
            names |= _code_names(const)
    return names


KERNELS: Registry[Family] = Registry("kernel")


def register_family(family: Family) -> Family:
    return KERNELS.register(family.name, family)


def randn(shape, gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Standard normal inputs drawn on the CPU from a seeded generator (same numbers on every
    device), then moved: the timed window never includes this."""
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
