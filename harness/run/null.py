"""The tracker interface, and the tracker that records nothing (`--no-tracking`).

Kept apart from `harness.track.tracking` so that choosing no tracking never imports mlflow (which
takes seconds to import and may not be wanted at all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Tracker(Protocol):
    """What the runner needs from a tracker; run ids are opaque strings."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def start(self, suite: str, run_name: str, params: dict, tags: dict) -> str: ...
    def start_child(self, name: str, params: dict, tags: dict) -> str: ...
    def resume(self, suite: str, parent_run_id: str) -> str: ...
    def resume_child(self, run_id: str) -> str: ...
    def log_dataset(self, run_id: str, name: str, digest: str, source: str, context: str) -> None: ...
    def log_metrics(
        self, run_id: str, metrics: dict[str, float], step: int | None = None
    ) -> None: ...
    def log_artifacts(self, run_id: str, paths: list[Path]) -> None: ...
    def end(self, run_id: str, status: str) -> None: ...
    def close(self) -> None: ...
    def knows_run(self, run_id: str) -> bool: ...


class NullTracker:
    """A tracker that accepts every call and records nothing; run ids are ""."""

    tracking_uri = ""
    experiment_id = ""
    parent_run_id = ""

    def start(self, suite: str, run_name: str, params: dict, tags: dict) -> str:
        return ""

    def start_child(self, name: str, params: dict, tags: dict) -> str:
        return ""

    def resume(self, suite: str, parent_run_id: str) -> str:
        return ""

    def resume_child(self, run_id: str) -> str:
        return ""

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, context: str) -> None:
        pass

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifacts(self, run_id: str, paths: list[Path]) -> None:
        pass

    def end(self, run_id: str, status: str) -> None:
        pass

    def close(self) -> None:
        pass

    def knows_run(self, run_id: str) -> bool:
        return False
