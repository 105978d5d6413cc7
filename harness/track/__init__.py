"""Tracking in MLflow: live (harness.track.tracking) and replaying a run directory's journal into a
store afterwards (harness.track.sync); the suite's experiment (experiments), a recorded run looked
up (recorded), the results table rebuilt from a store (mlflow_results). The only package that
imports mlflow.

Owns: the MLflow layout (one experiment per suite, a parent run per invocation, a child per task),
and `sync`. May import harness.core and harness.run (the journal, run directories, results);
nothing of gate/, views/ or the CLI. The run layer never imports this package: it logs through the
tracker it is given (this one, or harness.run.null when tracking is off).
"""
from __future__ import annotations

from pathlib import Path


def make_tracker(tracking: bool, tracking_uri: str | None, out_root: Path, create: bool = True):
    """The tracker `run` logs through: MLflow at `tracking_uri` (default: the SQLite store under
    out_root, created unless `create` is False), or, with tracking off, the null tracker (mlflow is
    then never imported). The store is checked first (harness.track.store): exit 2 if it is broken
    or does not answer."""
    if not tracking:
        from harness.run.null import NullTracker

        return NullTracker()
    from harness.track.tracking import MlflowTracker, default_tracking_uri

    return MlflowTracker(tracking_uri or default_tracking_uri(out_root, create=create), out_root / "mlartifacts",
                         create=create)
