"""Signals: SIGTERM and SIGHUP (what Slurm, Kubernetes, `timeout` and a closed terminal send) end a
run the way Ctrl-C does.

    with interrupt.handled():          # SIGTERM/SIGHUP raise Interrupted, SIGINT KeyboardInterrupt
        ...
        interrupt.check()              # between steps: raise a signal Python swallowed in a __del__
        with interrupt.deferred():     # a signal here waits until the block is done (then raises)
            write the run directory's first files
        interrupt.ignore()             # on the way out already: signals are dropped until handled() ends

`Interrupted` is a KeyboardInterrupt, so every `except KeyboardInterrupt` / `except BaseException`
cleanup path treats the three signals alike, and `except Exception` (a task's failure isolation)
never swallows one. Exit codes are 128 + the signal number: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.
"""
from __future__ import annotations

import contextlib
import signal
import threading

HANDLED = (signal.SIGTERM, signal.SIGHUP)
ALL = (signal.SIGINT, *HANDLED)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; `run_dir` is set by the runner once it has one."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_dir, self.rows = None, 0

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


_pending: list[int] = []  # signals raised and not yet handled by a cleanup (see check)


def _raise(signum, frame):
    _pending.append(signum)
    raise Interrupted(signum)


def check() -> None:
    """Raise a signal's Interrupted again if it was lost: a handler that fires inside a weakref
    callback or a `__del__` has its exception printed and ignored by Python. The runner calls this
    between tasks and on every progress update."""
    if _pending:
        raise Interrupted(_pending[0])


def clear() -> None:
    """The interruption reached its cleanup: nothing is pending any more."""
    _pending.clear()


def as_interrupted(e: BaseException) -> Interrupted:
    """A plain KeyboardInterrupt (Python's own SIGINT handler) as an Interrupted(SIGINT)."""
    if isinstance(e, Interrupted):
        return e
    out = Interrupted(signal.SIGINT)
    out.run_dir, out.rows = getattr(e, "run_dir", None), getattr(e, "rows", 0)
    return out


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handled():
    """SIGTERM and SIGHUP raise Interrupted in the main thread while the block runs."""
    if not _main_thread():  # signal handlers can only be set there (e.g. a test's worker thread)
        yield
        return
    before = {s: signal.getsignal(s) for s in ALL}  # all three: ignore() may change SIGINT's too
    for s in HANDLED:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, h in before.items():
            if h is not None:  # None: set outside Python, cannot be set back
                signal.signal(s, h)
        clear()


def ignore() -> None:
    """Drop SIGINT, SIGTERM and SIGHUP from now until `handled()` ends: the command is on its way
    out already and its cleanup must not be cut short. Used when a data-parallel process failed:
    torchrun sends SIGTERM to every other one, and rank 0 still records the failure (torchrun
    SIGKILLs what is left 30 s later)."""
    if _main_thread():
        for s in ALL:
            signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def deferred(reraise: bool = True):
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends: files written in it are never cut in half.

    With `reraise`, the first signal that arrived is raised when the block ends; without (cleanup
    after an interruption, which is already on its way out), it is dropped.
    """
    if not _main_thread():
        yield
        return
    pending: list[int] = []
    before = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in ALL}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    if pending and reraise:
        raise Interrupted(pending[0])
