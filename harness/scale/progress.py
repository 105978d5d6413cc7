"""What the shards of a launch are doing: each one's state and rows done, as a live table on a
terminal, or one plain line per change otherwise (CI logs, `nohup`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rows_done(run_dir: Path | None) -> int:
    """Tasks a run has finished: the child runs its journal (tracking.jsonl) ended."""
    if run_dir is None:
        return 0
    ended, parent = set(), None
    try:
        with open(run_dir / "tracking.jsonl", encoding="utf-8") as f:
            for line in f:
                if parent is None or '"end"' in line:
                    try:
                        rec = json.loads(line)
                    except (ValueError, RecursionError):  # a line being written, or not a record at all
                        continue
                    if not isinstance(rec, dict):
                        continue
                    parent = parent or rec.get("id")
                    if rec.get("op") == "end" and rec.get("id") != parent:
                        ended.add(rec.get("id"))
    except OSError:
        return 0
    return len(ended)


class Display:
    """`update(lines)` with one (shard, state, done, total, where) per shard; `close()` at the end."""

    def __init__(self, title: str, tty: bool | None = None):
        self.title = title
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._last: dict[str, tuple] = {}
        self._live = None
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), auto_refresh=False, transient=False)
            self._live.start()

    def update(self, lines: list[tuple[str, str, int, int, str]]) -> None:
        if self._live is not None:
            from rich.table import Table

            table = Table(title=self.title, title_justify="left")
            for column in ("shard", "state", "rows", "log"):
                table.add_column(column)
            for shard, state, done, total, where in lines:
                table.add_row(shard, state, f"{done}/{total}", where)
            self._live.update(table, refresh=True)
            return
        for shard, state, done, total, where in lines:
            now = (state, done)
            if self._last.get(shard) != now:
                self._last[shard] = now
                print(f"shard {shard}: {state}, {done}/{total} rows  ({where})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
