"""Shared fixtures.

MLflow's SQLite store runs its schema migrations on first use, which takes seconds; the store is
migrated once per session and each test gets its own copy of the file.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401  (the real single-node Slurm, session fixture)


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
    return store_copy(_migrated_store, tmp_path / "mlflow.db")


def store_copy(migrated: Path, path: Path) -> str:
    """The tracking URI of a copy of the migrated store at `path` (seconds saved per store)."""
    shutil.copyfile(migrated, path)
    return f"sqlite:///{path}"


REPO = Path(__file__).resolve().parents[1]

# the optional dependencies some tests need: `pip install -e ".[dev]"` (the README's line) brings
# none of them, so those tests skip, naming the extra; CI installs them all (.ci/run)
EXTRAS = {"submitit": "slurm", "ray": "ray", "psycopg": "postgres"}


def missing_extra(module: str) -> str | None:
    """Why a test that needs `module` (an optional dependency, EXTRAS) cannot run here, or None."""
    if importlib.util.find_spec(module) is not None:
        return None
    return f"needs {module}, which is not installed: pip install -e '.[{EXTRAS[module]}]'"


def needs_extra(module: str) -> pytest.MarkDecorator:
    """A test that needs the optional dependency `module`: skipped without it, saying which extra."""
    reason = missing_extra(module)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def require_extra(module: str) -> None:
    """Inside a fixture: skip its tests, saying which extra, without the optional dependency `module`."""
    reason = missing_extra(module)
    if reason:
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test logs into a user's MLflow server or store by accident."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in a real subprocess, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_suite(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def real_data_dir() -> Path | None:
    """The full Fashion-MNIST for tests: $HARNESS_DATA_DIR, else ../shared/data beside the checkout."""
    for candidate in (os.environ.get("HARNESS_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "FashionMNIST" / "raw").is_dir():
            return Path(candidate)
    return None


NO_FULL_DATA = (f"needs the full Fashion-MNIST: $HARNESS_DATA_DIR unset and nothing at "
                f"{REPO.parent / 'shared' / 'data'}")


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The full set, for tests that need all of it (skipped, saying so, without it)."""
    found = real_data_dir()
    if found is None:
        pytest.skip(NO_FULL_DATA)
    return found


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """A data directory for training tests (`--data-dir`, dataset fashion_mnist): the full set when
    present, else the sample shipped in the package, which has the same layout and the first
    2,000 + 1,000 examples (every limit these tests use fits), so a fresh clone runs them too."""
    from harness.train.datasets import SAMPLE, SHIPPED

    return real_data_dir() or SHIPPED[SAMPLE].root
