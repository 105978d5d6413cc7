"""Suites: a YAML file -> validated, frozen experiment specs, with the matrix expanded.

Owns: reading and checking suite files (harness.suite.loader), and finding the experiment kinds
the domain packages register (harness.core.kinds: each kind's spec model and checks). May import
harness.core and the domain packages (kernels, models, train); nothing of run/, track/, gate/,
views/ or the CLI.

    from harness.suite import load_suite, KernelSpec
    suite = load_suite("suites/kernels.yaml", seed=None, select="corr")
    for exp in suite.experiments: exp.id, exp.spec, exp.point
"""
from harness.kernels.kind import KernelSpec, LearnKernelSpec  # the kinds' spec models, re-exported as before
from harness.suite.loader import Experiment, Suite, SuiteError, load_kinds, load_suite
from harness.train.kind import TrainSpec

__all__ = ["Experiment", "Suite", "SuiteError", "load_suite", "load_kinds", "KernelSpec", "LearnKernelSpec",
           "TrainSpec"]
