"""A suite's duration on a device: estimated before it starts, refined while it runs.

    plan = Plan.build(experiments, device)      # each kind's `estimate` (harness.core.kinds.Work)
    plan.total_s, headline(plan, "cpu"), too_long(plan, "cpu")
    plan.start(i, j); plan.progress(0.5); plan.unit_done(1, 41.0); plan.task_done(90.0)
    plan.remaining_s()                          # what is left, as now known

Each experiment's Work lists the estimated seconds of its units (a training's epochs, a kernel's
rows) per task. Refinement: once a unit of an experiment has been measured, its units not yet
run cost the mean of its measured units (measured time per epoch x epochs remaining), and every
rated experiment not yet measured (a training: FLOPs / a probed rate) is scaled by the geometric
mean of measured / estimated over the rated experiments measured so far, with the probe itself
counted as one more (a ratio of 1), so one model's probe that was far off cannot swing the rest
by as much. A task's fixed cost
(Work.overhead_s) becomes the mean measured one of its kind (wall time minus its units). Within a
unit (the batches of an epoch), once a quarter of it is done, its rest is judged from its pace.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

HOUR_S = 3600.0


@dataclass
class _Task:
    units: list[float]  # estimated seconds of each unit, as first estimated
    done: int = 0  # units finished (those before a resume included)
    measured: dict[int, float] = field(default_factory=dict)  # unit -> its measured seconds
    wall_s: float | None = None  # the whole task, once finished (0: finished before a resume)


@dataclass
class _Experiment:
    id: str
    kind: str
    work: object  # harness.core.kinds.Work
    tasks: list[_Task]


class Plan:
    def __init__(self, experiments: list[tuple[str, str, object]], clock=time.perf_counter):
        """experiments: (id, kind name, Work) in the order they run; `clock`: seconds (tests pass their own)."""
        self.experiments = [_Experiment(i, k, w, [_Task(list(t)) for t in w.tasks]) for i, k, w in experiments]
        self.clock = clock
        self.current: tuple[int, int] | None = None
        self.fraction = 0.0  # of the current unit
        self.unit_start = clock()
        self.total_s = self.remaining_s()  # the first estimate, before anything ran

    @classmethod
    def build(cls, experiments, device, probe: bool = True) -> "Plan":
        """Ask each experiment's kind for its Work on `device` (probes run here, once per process);
        `probe` False: an empty plan (a process that shows nothing)."""
        from harness.core.kinds import KINDS, Work

        return cls([(e.id, e.spec.kind, KINDS.get(e.spec.kind).estimate(e.spec, device) if probe
                     else Work("task", ())) for e in experiments])

    # --- what the runner tells it
    def start(self, exp: int, task: int) -> None:
        self.current, self.fraction, self.unit_start = (exp, task), 0.0, self.clock()

    def progress(self, fraction: float) -> None:
        self.fraction = min(max(fraction, 0.0), 1.0)

    def unit_done(self, done: int, seconds: float) -> float | None:
        """`done` units of the current task have finished, the last one in `seconds`. Returns
        measured / estimated when this was the first unit measured of a rated experiment (the
        moment the estimate learns the most), else None."""
        if self.current is None:
            return None
        t = self._task(*self.current)
        first = None
        if done > t.done:
            e = self.experiments[self.current[0]]
            if e.work.rate and not any(x.measured for x in e.tasks) and done - 1 < len(t.units) and t.units[done - 1]:
                first = seconds / t.units[done - 1]
            t.measured[done - 1] = seconds
            t.done = done
        self.fraction, self.unit_start = 0.0, self.clock()
        return first

    def current_unit(self) -> str:
        """What the current task's units are ("epoch", "row"); "" between tasks."""
        return self.experiments[self.current[0]].work.unit if self.current else ""

    def task_done(self, wall_s: float) -> None:
        if self.current is None:
            return
        t = self._task(*self.current)
        if t.done == 0 and len(t.units) == 1:  # a task that reports no units: it was one (a kernel row)
            t.measured, t.done = {0: wall_s}, 1
        t.wall_s = wall_s
        self.current, self.fraction = None, 0.0

    def skip(self, exp: int, task: int) -> None:
        """A task finished before a resume: nothing left of it, nothing measured."""
        self._task(exp, task).wall_s = 0.0

    # --- what it says
    def remaining_s(self) -> float:
        return sum(self.experiment_remaining_s(i) for i in range(len(self.experiments)))

    def done_s(self) -> float:
        """Work done, in seconds: the finished tasks' wall times, the current one's finished units."""
        done = 0.0
        for e in self.experiments:
            for t in e.tasks:
                done += t.wall_s if t.wall_s is not None else sum(t.measured.values())
        return done + self._current_part()

    def experiment_remaining_s(self, i: int) -> float:
        e = self.experiments[i]
        left = 0.0
        for j, t in enumerate(e.tasks):
            if t.wall_s is not None:
                continue
            left += sum(self._unit_s(i, t, u) for u in range(t.done, len(t.units)))
            left += self._overhead_s(e)
            if self.current == (i, j):
                left -= self._current_part()
                left += self._current_overrun()
        return max(left, 0.0)

    def experiment_s(self, i: int) -> float:
        """The experiment's whole estimate (as first made)."""
        return self.experiments[i].work.seconds

    def correction(self) -> float:
        """measured / estimated over the rated experiments measured so far: their geometric mean with
        the probe's own 1 (one model's probe can be far off; seen 29x for LeNet beside 0.5x for ResNet)."""
        ratios = [r for e in self.experiments if e.work.rate for r in [self._ratio(e)] if r is not None]
        return math.exp(sum(map(math.log, ratios)) / (len(ratios) + 1))

    # --- inside
    def _task(self, exp: int, task: int) -> _Task:
        tasks = self.experiments[exp].tasks
        while len(tasks) <= task:  # a kind whose Work lists fewer tasks than it made: unknown cost
            tasks.append(_Task([0.0]))
        return tasks[task]

    def _ratio(self, e: _Experiment) -> float | None:
        measured = [(m, t.units[k]) for t in e.tasks for k, m in t.measured.items() if k < len(t.units)]
        est = sum(u for _, u in measured)
        return sum(m for m, _ in measured) / est if measured and est > 0 else None

    def _unit_s(self, i: int, t: _Task, u: int) -> float:
        e = self.experiments[i]
        ratio = self._ratio(e)
        if ratio is None and e.work.rate:
            ratio = self.correction()
        return t.units[u] * (ratio if ratio is not None else 1.0)

    def _overhead_s(self, e: _Experiment) -> float:
        """The mean measured fixed cost of the kind's finished tasks (wall time minus their units)."""
        seen = [max(t.wall_s - sum(t.measured.values()), 0.0) for x in self.experiments if x.kind == e.kind
                for t in x.tasks if t.wall_s and len(t.measured) == t.done]
        return sum(seen) / len(seen) if seen else e.work.overhead_s

    def _current_part(self) -> float:
        if self.current is None:
            return 0.0
        i, j = self.current
        t = self._task(i, j)
        u = t.done
        return self.fraction * self._unit_s(i, t, u) if u < len(t.units) else 0.0


    def _current_overrun(self) -> float:
        """Seconds the current unit will take beyond its estimate, judged from its pace once a
        quarter of it is done (sooner, its first batches' warm-up would mislead)."""
        if self.current is None or self.fraction < 0.25:
            return 0.0
        i, j = self.current
        t = self._task(i, j)
        if t.done >= len(t.units):
            return 0.0
        est = self._unit_s(i, t, t.done)
        paced = (self.clock() - self.unit_start) / self.fraction
        return (paced - est) * (1 - self.fraction)


def duration(seconds: float) -> str:
    """'40 s', '14 min', '2.5 h', '3.1 days': as precise as a plan needs."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * HOUR_S:
        return f"{seconds / HOUR_S:.1f} h"
    return f"{seconds / 86400:.1f} days"


def rates(plan: Plan) -> str:
    """The probed FLOP rates, e.g. 'probe: 3.1 GFLOP/s' or 'probe: 0.9-9.8 GFLOP/s'; '' without one."""
    found = sorted({e.work.rate for e in plan.experiments if e.work.rate})
    if not found:
        return ""
    lo, hi = found[0] / 1e9, found[-1] / 1e9
    return f"probe: {lo:,.1f} GFLOP/s" if f"{lo:,.1f}" == f"{hi:,.1f}" else f"probe: {lo:,.1f}-{hi:,.1f} GFLOP/s"


def headline(plan: Plan, device: str) -> str:
    """`estimate: ~14 min on cpu (probe: 3.1 GFLOP/s)`"""
    probe = rates(plan)
    return f"estimate: ~{duration(plan.remaining_s())} on {device}" + (f" ({probe})" if probe else "")


def too_long(plan: Plan, device: str, suite_hint: str = "suites/smoke.yaml") -> str | None:
    """The warning for a CPU run over an hour (None: no warning)."""
    left = plan.remaining_s()
    if device != "cpu" or left <= HOUR_S:
        return None
    return (f"warning: this would take about {duration(left)} on this CPU. Try the smoke suite first "
            f"(python -m harness run {suite_hint}), fewer experiments (-k NAME), or a GPU (--device cuda).")
