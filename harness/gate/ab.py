"""Same-machine A/B for the CI gate: another revision's kernels and this tree's, measured side by
side on this machine.

    python -m harness check suites/kernels-ci.yaml --against main

Stored timings mean nothing on another CPU type or torch build, and drift with load and clocks
even on the same one. A/B measures both sides now, here: REV's tracked `harness/` is extracted
from git into a temporary directory (`git archive`: the user's tree, index and worktrees are never
touched), and two worker processes are started, one per side. Each runs this tree's measurement
code (harness.gate.measure.Side: the reference check, the calibration, the timing) on its side's
`harness/kernels/` package: the worker of REV imports REV's kernels in place of this tree's
(`KernelsFrom`), so a REV older than this module, or than any helper it uses, is measured with its
kernel code as it was. Only this tree loads the suite; both workers get the same plain plan.

The rounds alternate: REV then this tree in even rounds, this tree then REV in odd ones (ABBA), one
worker at a time while the other waits, so load and clock drift hit both sides alike and the two
never compete for a core. Each side's samples are normalised by its own calibration as in baseline
mode, and harness.gate.check judges them with the same rules. HARNESS_REGRESS_SLOWDOWN (the detection
study) slows this tree's side only.

Protocol: one JSON object per line on the worker's stdin, one reply per line on its stdout (the
worker's own prints go to stderr): prepare, round, calibrate, result.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

import harness
from harness.core.errors import UserError

# this tree's measurement helpers, kept when a worker imports another revision's kernels
OWN_MODULES = ("harness.kernels.bench",)
# where the modules that kernels import from outside their package live now (a revision from
# before the layout of harness/ into subpackages imports them by their old names)
MOVED = {"harness.errors": "harness.core.errors", "harness.registry": "harness.core.registry"}
# each side of a pair times a case for this share of its min_run_time_s: twice the rounds for the same
# time, and the two halves of a pair half as far apart, so fewer pairs straddle a change of speed
SHARE = 0.5
# the rounds are shared out over this many pairs of worker processes: a process's own luck (where its
# tensors and code landed, a few % for some kernels) then varies within the sample instead of
# shifting one side of every pair alike, which no number of pairs from one process would reveal
PROCESS_PAIRS = 2
PER_ROUND = ("best_s", "round_median_s", "number_per_run", "samples_s", "normalised")
# Ctrl-C is the driver's to handle (it ends the workers): ignored before anything else is imported
BOOT = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); sys.path.insert(0, sys.argv[1]); "
        "from harness.gate.ab import worker; worker(sys.argv[2] or None, sys.argv[3])")


def harness_root() -> Path:
    """The directory that holds this harness package (the checkout's root in development)."""
    return Path(harness.__file__).resolve().parent.parent


def git(root: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=not binary)


def resolve(rev: str, flag: str = "--against") -> tuple[str, Path]:
    """(full commit, repository top) of REV in the repository this harness is checked out in."""
    root = harness_root()
    top = git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise UserError(f"{flag} {rev}: this harness ({root}) is not in a git checkout, so no other revision "
                        f"can be measured; run it from a clone of the repository")
    top_dir = Path(top.stdout.strip())
    commit = git(top_dir, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if commit.returncode != 0:
        shallow = git(top_dir, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        raise UserError(f"{flag} {rev}: not a commit of {top_dir}"
                        + ("; this clone is shallow: git fetch --unshallow" if shallow else
                           "; give a commit, branch or tag (git log --oneline)"))
    return commit.stdout.strip(), top_dir


def extract(commit: str, top: Path, dest: Path, flag: str = "--against") -> Path:
    """REV's tracked harness/ under dest (git archive); returns the root a worker imports from."""
    rel = harness_root().relative_to(top) / "harness"
    if git(top, "cat-file", "-e", f"{commit}:{rel.as_posix()}/kernels/__init__.py").returncode != 0:
        raise UserError(f"{flag} {commit[:12]}: that revision has no {rel.as_posix()}/kernels/ package to measure")
    archive = git(top, "archive", "--format=tar", commit, rel.as_posix(), binary=True)
    if archive.returncode != 0:
        raise UserError(f"{flag} {commit[:12]}: git archive failed: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest / rel.parent


def measure_ab(suite, device: str, ref_root: Path, rounds: int, slowdown: float | None) -> tuple[dict, dict]:
    """(REV's measurement, this tree's), each as harness.gate.measure.Side.result() gives it, the
    rounds shared out over PROCESS_PAIRS pairs of workers, merged."""
    from harness.gate.measure import plan

    experiments = plan(suite)
    t0 = time.perf_counter()
    pairs = [(_Worker("the revision", ref_root), _Worker("this tree", None)) for _ in range(PROCESS_PAIRS)]
    try:
        for ref, cur in pairs:
            for w, slow in ((ref, 1.0 if slowdown else None), (cur, slowdown)):  # the same wrapper, unslowed
                w.send(cmd="prepare", plan=experiments, device=device, slowdown=slow)
        workers = [w for pair in pairs for w in pair]
        for w in workers:
            w.reply()
        keys = [k for k in workers[0].timed if all(k in w.timed for w in workers)]
        for w in workers:  # a case only one side can run is not timed on the other either
            w.call(cmd="skip", keys=[k for k in w.timed if k not in keys])
        print(f"both sides checked against the float64 reference in {time.perf_counter() - t0:.1f} s; timing "
              f"{len(keys)} cases of each side in {rounds} pairs, {PROCESS_PAIRS} pairs of processes (A/B)"
              + (f", injected slowdown x{slowdown} on this tree" if slowdown else ""), file=sys.stderr, flush=True)
        results = []
        for n, (ref, cur) in enumerate(pairs):
            for r in range(n * rounds // PROCESS_PAIRS, (n + 1) * rounds // PROCESS_PAIRS):
                for w in (ref, cur) if r % 2 == 0 else (cur, ref):
                    w.call(cmd="calibrate")
                for i, key in enumerate(keys):
                    for w in (ref, cur) if (r + i) % 2 == 0 else (cur, ref):
                        w.call(cmd="case", key=key)
            for w in (ref, cur):
                w.call(cmd="calibrate")
            results.append((ref.call(cmd="result"), cur.call(cmd="result")))
            ref.close()
            cur.close()
        return merge([ref for ref, _ in results]), merge([cur for _, cur in results])
    except BaseException:  # an interruption or a failure: the workers have nothing left to finish
        for w in (w for pair in pairs for w in pair):
            w.kill()
        raise
    finally:
        for w in (w for pair in pairs for w in pair):
            w.close()


def merge(parts: list[dict]) -> dict:
    """One side's measurements from several worker processes as one: every per-round list joined
    in round order, a case failed if it failed in any, medians and speedups over all rounds."""
    from harness.gate.measure import summarise

    first = parts[0]
    cases = {}
    for key, entry in first["cases"].items():
        entries = [p["cases"][key] for p in parts]
        bad = next((e for e in entries if e["status"] != "ok"), None)
        cases[key] = dict(bad) if bad else {**entry, **{k: [x for e in entries for x in e[k]] for k in PER_ROUND}}
    calibration = {t: {"best_s": [x for p in parts for x in p["calibration"][t]["best_s"]],
                       "parts": {name: {k: [x for p in parts for x in p["calibration"][t]["parts"][name][k]]
                                        for k in part} for name, part in cal["parts"].items()}}
                   for t, cal in first["calibration"].items()}
    summarise(cases)
    return {"rounds": sum(p["rounds"] for p in parts), "injected_slowdown": first["injected_slowdown"],
            "calibration": calibration, "cases": cases, "wall_s": sum(p["wall_s"] for p in parts)}


def measure_revision(suite, device: str, rev: str, flag: str, rounds: int, slowdown) -> tuple[dict, dict]:
    """REV resolved, extracted and measured side by side with this tree: (REV's document, this
    tree's), as harness.gate.measure.document writes them."""
    import tempfile

    from harness.core import envinfo
    from harness.gate.measure import document

    commit, top = resolve(rev, flag)
    with tempfile.TemporaryDirectory(prefix="harness-ab-") as tmp:
        root = extract(commit, top, Path(tmp), flag)
        ref, cur = measure_ab(suite, device, root, rounds, slowdown)
    env = envinfo.collect()
    docs = (document(suite, device, ref, env | {"git_commit": commit, "git_dirty": False, "git_describe": commit[:12]}),
            document(suite, device, cur, env))
    for doc in docs:  # the rounds in PROCESS_PAIRS consecutive blocks, one per pair (check.judge's groups)
        doc["method"]["process_pairs"] = PROCESS_PAIRS
    return docs


class _Worker:
    """A worker process measuring one side (see `worker`)."""

    def __init__(self, label: str, kernels_from: Path | None):
        self.label, self.timed = label, None
        # a session of its own: a terminal's Ctrl-C (sent to the foreground process group) reaches the
        # driver alone, which ends the workers; they end too when the driver dies (their stdin closes)
        self.proc = subprocess.Popen([sys.executable, "-c", BOOT, str(harness_root()), str(kernels_from or ""),
                                      str(_cpu())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)

    def send(self, **msg) -> None:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the A/B worker of {self.label} exited (code {self.proc.wait()}); its output is above")
        msg = json.loads(line)
        if "user_error" in msg:
            raise UserError(f"{self.label}: {msg['user_error']}")
        if "error" in msg:
            raise RuntimeError(f"the A/B worker of {self.label} failed:\n{msg['error']}")
        if "timed" in msg:
            self.timed = msg["timed"]
        return msg

    def call(self, **msg) -> dict:
        self.send(**msg)
        return self.reply()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _cpu() -> int:
    """The one CPU both workers run on (-1: no affinity on this platform): the two sides of a pair
    then share a core's state too (a VM's vCPUs differ in speed from moment to moment)."""
    try:
        return max(os.sched_getaffinity(0))
    except AttributeError:
        return -1


class KernelsFrom(importlib.abc.MetaPathFinder):
    """Imports `harness.kernels` and its modules from another checkout's harness/ (REV's kernel
    families, inputs, references and variants), except OWN_MODULES, which stay this tree's."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "harness" / "kernels"
        self.own = Path(__file__).resolve().parents[1] / "kernels"

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "harness.kernels" and not fullname.startswith("harness.kernels."):
            return None
        base = self.own if fullname in OWN_MODULES else self.dir
        rel = fullname.split(".")[2:]
        package = base.joinpath(*rel)
        if (package / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(fullname, package / "__init__.py",
                                                          submodule_search_locations=[str(package)])
        module = package.with_suffix(".py")
        return importlib.util.spec_from_file_location(fullname, module) if rel and module.is_file() else None


def worker(kernels_from: str | None, cpu: str = "-1") -> None:
    """A worker's main loop: `python -c BOOT <this tree's root> <REV's root, or ''> <CPU>`."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints of the measured code go to stderr, never into the protocol
    if kernels_from:
        import importlib

        for old, new in MOVED.items():
            sys.modules[old] = importlib.import_module(new)
        sys.meta_path.insert(0, KernelsFrom(Path(kernels_from)))
    import torch  # noqa: F401  (both workers import it at once, before the driver's first message)

    try:
        _serve(proto, cpu)
    except (BrokenPipeError, KeyboardInterrupt):  # the driver is gone: nobody to answer, nothing to report
        os._exit(1)


def _serve(proto, cpu: str) -> None:
    """Answer the driver's messages on stdin until it closes it."""
    from harness.gate.measure import Side

    side = None
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "prepare":
                side = Side(msg["plan"], msg["device"], msg["slowdown"])
                if int(cpu) >= 0:  # after the start-up and the checks, which both workers run at once
                    os.sched_setaffinity(0, {int(cpu)})
                reply = {"timed": list(side.calls)}
            elif msg["cmd"] == "skip":
                side.skip(msg["keys"])
                reply = {}
            elif msg["cmd"] == "case":
                side.time_case(msg["key"], SHARE)
                reply = {}
            elif msg["cmd"] == "calibrate":
                side.calibrate()
                reply = {}
            else:
                reply = side.result()
        except UserError as e:
            reply = {"user_error": str(e)}
        except Exception:
            reply = {"error": traceback.format_exc()}
        proto.write(json.dumps(reply) + "\n")
