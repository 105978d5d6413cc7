"""Suites: a YAML file -> validated, frozen experiment specs, with the matrix expanded.

Owns: reading and checking suite files (harness.suite.loader), finding the experiment kinds the
domain packages register (harness.core.kinds: each kind's spec model and checks), and cutting the
expanded list into shards (harness.suite.shard). May import harness.core and the domain packages
(kernels, models, train); nothing of run/, track/, gate/, views/ or the CLI.

    from harness.suite import load_suite, KernelSpec
    suite = load_suite("suites/kernels.yaml", seed=None, select="corr")
    for exp in suite.experiments: exp.id, exp.spec, exp.point

The names below are imported on first use, so that `harness.suite.shard` (used by `merge`, which
needs no torch) does not load the kinds and torch with the package.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"Experiment": "harness.suite.loader", "Suite": "harness.suite.loader",
            "SuiteError": "harness.suite.loader", "load_suite": "harness.suite.loader",
            "load_kinds": "harness.suite.loader", "KernelSpec": "harness.kernels.kind",
            "LearnKernelSpec": "harness.kernels.kind", "TrainSpec": "harness.train.kind"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness.suite' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
