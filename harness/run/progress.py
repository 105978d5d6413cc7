"""What the console shows while a suite runs, from its Plan (harness.run.estimate).

On a terminal: two rich bars, the suite's work (its units weighted by their estimated seconds:
epochs of trainings, timing rows of kernels; not experiments) with the time left, and the current
task's batches. Elsewhere (nohup, CI, Slurm logs: stderr is not a terminal): one plain line at most
every HARNESS_PROGRESS_INTERVAL seconds (default 30) with the task, its epoch and batches, the
elapsed time and the time left. A quiet console (another data-parallel process than rank 0) shows
nothing. And the line printed for each finished row (`row_line`).
"""
from __future__ import annotations

import os
import time

from harness.run.estimate import duration, headline, too_long
from harness.run.formats import fmt_time

INTERVAL_ENV = "HARNESS_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0
REFRESH_S = 0.2  # the suite bar is recomputed at most this often


def interval_s() -> float:
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


def announce(console, plan, device: str) -> None:
    """The estimate before the suite starts (`estimate: ~14 min on cpu (probe: 3.1 GFLOP/s)`), and
    the warning when a CPU would take over an hour."""
    console.print(headline(plan, device), highlight=False, markup=False)
    warning = too_long(plan, device)
    if warning:
        console.print(f"[yellow]{warning}[/yellow]", highlight=False)


class SuiteProgress:
    def __init__(self, console, plan, name: str):
        self.console, self.plan, self.name = console, plan, name
        self.live = console.is_terminal and not console.quiet
        self.plain = not console.is_terminal and not console.quiet
        self.t0 = self.last_line = time.perf_counter()
        self.interval = interval_s()
        self.label, self.inner_text, self.last_bar = "", "", 0.0
        self.bars = None

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                       TimeElapsedColumn(), TextColumn("{task.fields[left]}"))
            self.bars = Progress(*columns, console=self.console, transient=True).__enter__()
            self.suite = self.bars.add_task(self.name, total=1, count="", left="")
            self.inner = self.bars.add_task("", total=1, visible=False, count="", left="")
            self._refresh(force=True)
        return self

    def __exit__(self, *exc):
        if self.bars is not None:
            self.bars.__exit__(*exc)
        return False

    # --- what the runner says
    def start(self, exp: int, task: int, label: str) -> None:
        self.plan.start(exp, task)
        self.label, self.inner_text = label, ""
        if self.bars is not None:
            self.bars.reset(self.inner, visible=False, description="", count="", left="")
        self._refresh(force=True)

    def update(self, description: str, completed: float, total: float) -> None:
        """Progress inside the task (the training loop's batches of an epoch)."""
        self.plan.progress(completed / total if total else 0.0)
        self.inner_text = f"{description} batch {completed:,.0f}/{total:,.0f}"
        if self.bars is not None:
            self.bars.update(self.inner, description=f"  {description}", completed=completed, total=total,
                             visible=True, count=f"{completed:,.0f}/{total:,.0f}")
        self._refresh()

    def unit_done(self, done: int, seconds: float) -> None:
        ratio = self.plan.unit_done(done, seconds)
        if ratio is not None:  # once per training: what its first epoch taught the estimate
            took = f"{ratio:.{0 if ratio >= 10 else 1 if ratio >= 0.1 else 2}f}x"
            self.console.print(f"  estimate: ~{duration(self.plan.remaining_s())} left ({self.label}'s first "
                               f"{self.plan.current_unit()} took {took} its estimate)", highlight=False, markup=False)
        self._refresh(force=True)

    def task_done(self, wall_s: float) -> None:
        self.plan.task_done(wall_s)
        self.inner_text = ""
        if self.bars is not None:
            self.bars.update(self.inner, visible=False)
        self._refresh(force=True)

    def skip(self, exp: int, task: int) -> None:
        self.plan.skip(exp, task)
        self._refresh(force=True)

    # --- showing it
    def _refresh(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.plain and now - self.last_line >= self.interval:
            self.last_line = now
            self.console.print(self.line(now), highlight=False, markup=False)
        if self.bars is None or (not force and now - self.last_bar < REFRESH_S):
            return
        self.last_bar = now
        done, left = self.plan.done_s(), self.plan.remaining_s()
        total = done + left or 1.0
        self.bars.update(self.suite, description=f"{self.name} {self.label}".rstrip(), completed=done,
                         total=total, count=f"{done / total:.0%}", left=f"~{duration(left)} left")

    def line(self, now: float | None = None) -> str:
        """The plain progress line: `progress: lenet epoch 1/2 batch 5/8 | elapsed 42 s, ~3 min left (12%)`."""
        now = time.perf_counter() if now is None else now
        done, left = self.plan.done_s(), self.plan.remaining_s()
        where = " ".join(x for x in (self.label, self.inner_text) if x) or self.name
        share = done / (done + left) if done + left else 0.0
        return (f"progress: {where} | elapsed {duration(now - self.t0)}, ~{duration(left)} left "
                f"({share:.0%} of the work done)")


def row_line(row: dict) -> str:
    """The console line of a finished row: its status, what ran, and its main number (or why not)."""
    from rich.markup import escape  # ids like lenet[seed=1] are not markup

    head = escape(f"{row['experiment']:<22} {row['variant']:<11} {row['size']:<30}")
    if row["status"] == "ok" and row.get("time_median_s") is not None:
        noisy = (f"  [yellow]noisy[/yellow] (IQR {row['time_iqr_s'] / row['time_median_s']:.0%} of the median)"
                 if row.get("noisy") else "")
        return f"[green]ok[/green]     {head} {fmt_time(row['time_median_s'])}{noisy}"
    if row["status"] == "ok" and row.get("val_acc") is not None:
        return (f"[green]ok[/green]     {head} val_acc {row['val_acc']:.4f}  "
                f"{row['images_per_s']:,.0f} img/s  {row['wall_s']:.1f} s")
    if row["status"] == "ok":
        return f"[green]ok[/green]     {head}"
    colour = "yellow" if row["status"] == "capped" else "red"
    return f"[{colour}]{row['status']:<6}[/{colour}] {head} {escape(str(row.get('error') or ''))}"
