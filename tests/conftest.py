"""Shared fixtures.

MLflow's SQLite store runs its schema migrations on first use, which takes seconds; the store is
migrated once per session and each test gets its own copy of the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of an empty, fully migrated MLflow SQLite database (created once per session)."""
    from mlflow.tracking import MlflowClient  # imported here: most tests never need mlflow

    path = tmp_path_factory.mktemp("mlflow-store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # runs the migrations
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path, _migrated_store: Path) -> str:
    """A private, already migrated SQLite tracking URI for one test."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_store, path)
    return f"sqlite:///{path}"
