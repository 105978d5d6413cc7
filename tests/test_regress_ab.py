"""The gate side by side (harness.gate.ab), through real subprocesses and real git repositories:
a plugin-slowed variant fails `check --against HEAD` and the unchanged tree passes; a baseline
recorded on another CPU falls back to measuring its commit; a baseline is never recorded from a
dirty tree; a check that compares no case does not pass; a revision older than the A/B feature is
measured with its own kernel code."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, write_suite

# A plugin inside the kernels package, so that each side of an A/B check imports its own copy: at
# HEAD it calls corr2d's native variant once; the working tree's edit makes it call it twice.
PLUGIN = '''
"""Test-only: corr2d's native variant again, as `native_probe`."""
from harness.kernels import KERNELS
from harness.kernels.corr2d import native


@KERNELS.get("corr2d").variant("native_probe")
def native_probe(case, X, K):
    return native(case, X, K)
'''
TWICE = PLUGIN.replace("    return native(case, X, K)", "    native(case, X, K)\n    return native(case, X, K)")

SUITE = """
    suite: probe
    defaults: {min_run_time_s: 0.01, threads: 1}
    experiments:
      - {name: corr2d, kind: kernel, kernel: corr2d, variants: [native, native_probe], sizes: {input: [[64, 64]], kernel: [[3, 3]]}}
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this checkout's harness/ (as it is in the working tree), the probe
    plugin and the probe suite, all committed: HEAD is clean."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "harness", root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "harness" / "kernels" / "probe_plugin.py").write_text(textwrap.dedent(PLUGIN))
    write_suite(root / "probe.yaml", SUITE)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "probe")
    return root


def harness(repo: Path, *args, plugin: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` run from `repo`, so that repo's harness/ is the one imported."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    if plugin:
        env["HARNESS_PLUGINS"] = "harness.kernels.probe_plugin"
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)


def verdicts(stdout: str) -> dict:
    out = {}
    for ln in stdout.splitlines():
        verdict = next((v for v in ("ok", "regressed", "ambiguous", "faster", "failed", "not comparable")
                        if ln.startswith(v + " ")), None)
        if verdict:
            out[ln[15:].split()[0]] = verdict
    return out


def test_a_plugin_slowed_variant_fails_against_head_and_the_unchanged_tree_passes(repo):
    proc = harness(repo, "check", "probe.yaml", "--against", "HEAD", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "regressed" not in proc.stdout and f"against {git(repo, 'rev-parse', 'HEAD')[:12]} side by side" in proc.stdout

    (repo / "harness" / "kernels" / "probe_plugin.py").write_text(textwrap.dedent(TWICE))
    proc = harness(repo, "check", "probe.yaml", "--against", "HEAD", "--device", "cpu")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdicts(proc.stdout)["corr2d/native_probe/in=64x64"] == "regressed", proc.stdout
    assert verdicts(proc.stdout)["corr2d/native/in=64x64"] != "regressed", proc.stdout  # its twin, unchanged
    line = next(ln for ln in proc.stdout.splitlines() if "native_probe" in ln)
    assert "code changed" in line  # compared although its code hash changed: that is the point of A/B
    first, last = (json.loads(p.read_text()) for p in sorted(repo.glob("results/probe-check/*/check.json")))
    assert first["mode"] == last["mode"] == "ab" and last["against"] == git(repo, "rev-parse", "HEAD")
    assert first["summary"]["regressed"] == 0 and last["summary"]["regressed"] == 1
    # the user's tree, index and worktrees untouched
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == "M harness/kernels/probe_plugin.py"
    assert git(repo, "worktree", "list").count("\n") == 0  # and no worktree left behind


def test_a_slowdown_fails_side_by_side_at_the_fewest_rounds_allowed(repo, monkeypatch):
    """7 pairs, the fewest `check` accepts (6 could reach p 0.016 at best, 3 reached 0.125 and let a
    4.27x slowdown pass as ambiguous): a slowdown in every pair is regressed there, in both pairs of
    processes."""
    monkeypatch.setenv("HARNESS_REGRESS_SLOWDOWN", "20")
    proc = harness(repo, "check", "probe.yaml", "--against", "HEAD", "--rounds", "7", "--device", "cpu")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert set(verdicts(proc.stdout).values()) == {"regressed"} and "2 cases: 2 regressed" in proc.stdout, proc.stdout


def test_ctrl_c_during_a_side_by_side_check_ends_the_workers_quietly_in_one_line(repo, tmp_path):
    """Ctrl-C in a terminal reaches the whole foreground process group: the driver says what was
    written, once, and exits 130; the four workers end with it, without a traceback of their own."""
    out = tmp_path / "r"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    env["HARNESS_PLUGINS"] = "harness.kernels.probe_plugin"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "check", "probe.yaml", "--against", "HEAD", "--rounds",
                             "10000", "--device", "cpu", "--out", str(out)], cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    err = ""
    for line in proc.stderr:  # wait until the four workers are checked and timing
        err += line
        if "both sides checked against the float64 reference" in line:
            break
    else:
        proc.wait()
        pytest.fail(f"exited {proc.returncode} before timing:\n{err}")
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the driver's group, as started
    stdout, rest = proc.communicate(timeout=120)
    err += rest
    assert proc.returncode == 130, stdout + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.splitlines()[-1] == ("interrupted (Ctrl-C): nothing was written (check.md and check.json are written "
                                    "once every case is timed)"), err
    assert not out.exists()
    left = [p for p in Path("/proc").glob("[0-9]*") if _is_worker_of(p, repo)]
    assert not left, f"A/B workers still running: {left}"


def _is_worker_of(proc_dir: Path, repo: Path) -> bool:
    try:
        cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:  # ended meanwhile
        return False
    return any(b"harness.gate.ab import worker" in a for a in cmdline) and str(repo.resolve()).encode() in cmdline


def test_a_baseline_recorded_on_another_cpu_falls_back_to_measuring_its_commit(repo):
    proc = harness(repo, "baseline", "probe.yaml", "--out", "b.json", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((repo / "b.json").read_text())
    assert doc["env"]["git_commit"] == git(repo, "rev-parse", "HEAD") and doc["env"]["git_dirty"] is False
    here = doc["machine"]["cpu_vendor"]
    doc["machine"] |= {"cpu_vendor": "OtherVendor", "cpu_capability": "OtherCapability"}
    (repo / "b.json").write_text(json.dumps(doc))  # an untracked file: the tree stays clean

    proc = harness(repo, "check", "probe.yaml", "--baseline", "b.json", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"recorded on another machine: cpu_vendor: OtherVendor -> {here}; cpu_capability: OtherCapability ->" in proc.stdout
    assert f"measuring its commit {doc['env']['git_commit'][:12]} side by side with this tree (A/B" in proc.stdout
    assert set(verdicts(proc.stdout).values()) <= {"ok", "ambiguous", "faster"}, proc.stdout

    proc = harness(repo, "check", "probe.yaml", "--baseline", "b.json", "--device", "cpu", "--stored", "--out", "r")
    assert proc.returncode == 2 and not (repo / "r").exists()  # its numbers never stand in on another machine
    assert "its numbers were recorded on another machine and apply only there; drop --stored" in proc.stderr


def test_a_baseline_of_this_machine_is_measured_side_by_side_by_default_and_its_numbers_used_with_stored(repo):
    proc = harness(repo, "baseline", "probe.yaml", "--out", "b.json", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commit = git(repo, "rev-parse", "HEAD")
    proc = harness(repo, "check", "probe.yaml", "--baseline", "b.json", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cannot judge" not in proc.stdout and f"measuring its commit {commit[:12]} side by side" in proc.stdout
    assert f"(against {commit[:12]} side by side, threshold 5%" in proc.stdout
    proc = harness(repo, "check", "probe.yaml", "--baseline", "b.json", "--device", "cpu", "--stored")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # stored numbers on a noisy VM: a verdict
    assert "comparing with its stored numbers (recorded on this machine)" in proc.stdout
    assert "2 cases: " in proc.stdout and "(against stored baseline, threshold 25%" in proc.stdout
    proc = harness(repo, "check", "probe.yaml", "--against", "HEAD", "--stored", "--device", "cpu")
    assert proc.returncode == 2 and "--stored compares with a baseline file's numbers" in proc.stderr


def test_a_baseline_is_not_recorded_from_a_dirty_tree_and_a_dirty_one_cannot_stand_in_elsewhere(repo):
    (repo / "harness" / "kernels" / "probe_plugin.py").write_text(textwrap.dedent(TWICE))
    proc = harness(repo, "baseline", "probe.yaml", "--out", "b.json", "--device", "cpu")
    assert proc.returncode == 2 and not (repo / "b.json").exists()
    assert proc.stderr.startswith("error: baseline: this tree has uncommitted changes (git status)")
    proc = harness(repo, "baseline", "probe.yaml", "--out", "b.json", "--device", "cpu", "--allow-dirty")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((repo / "b.json").read_text())
    doc["machine"]["cpu_model"] = "Another CPU"
    (repo / "b.json").write_text(json.dumps(doc))
    proc = harness(repo, "check", "probe.yaml", "--baseline", "b.json", "--device", "cpu", "--out", "r")
    assert proc.returncode == 2 and not (repo / "r").exists()
    assert "recorded on another machine and apply only there, and it was recorded from a dirty tree" in proc.stderr


def test_a_check_that_compares_no_case_does_not_pass(repo):
    plugin = repo / "harness" / "kernels" / "probe_plugin.py"
    plugin.write_text(plugin.read_text() + textwrap.dedent('''

        @KERNELS.get("corr2d").variant("native_new")
        def native_new(case, X, K):
            return native(case, X, K)
        '''))
    write_suite(repo / "new.yaml", SUITE.replace("native, native_probe", "native_new").replace("probe", "new"))
    proc = harness(repo, "check", "new.yaml", "--against", "HEAD", "--device", "cpu")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdicts(proc.stdout) == {"corr2d/native_new/in=64x64": "not comparable"}, proc.stdout
    head = git(repo, "rev-parse", "HEAD")[:12]
    assert f"missing at {head}: no variant native_new of kernel corr2d in this tree" in proc.stdout
    assert "FAILED: no case was compared" in proc.stdout


def test_bad_revisions_are_exit_2_before_anything_is_timed(repo, tmp_path):
    proc = harness(repo, "check", "probe.yaml", "--against", "no-such-rev", "--device", "cpu", "--out", "r")
    assert proc.returncode == 2 and not (repo / "r").exists()
    assert proc.stderr.strip() == (f"error: --against no-such-rev: not a commit of {repo.resolve()}; give a commit, "
                                   f"branch or tag (git log --oneline)")
    proc = harness(repo, "check", "probe.yaml", "--against", "HEAD", "--baseline", "b.json", "--device", "cpu")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_a_revision_older_than_the_ab_feature_is_measured_with_its_own_kernels(tmp_path):
    """This repository's own history: the commit that added the gate had no A/B code at all."""
    log = subprocess.run(["git", "-C", str(REPO), "log", "--format=%H", "--diff-filter=A", "--", "harness/regress.py"],
                         capture_output=True, text=True)
    if log.returncode != 0 or not log.stdout.strip():
        pytest.skip("not a git checkout with the gate's history (an sdist or a shallow clone)")
    old = log.stdout.split()[-1]
    suite = write_suite(tmp_path / "tiny.yaml", """
        suite: tiny
        defaults: {min_run_time_s: 0.01, threads: 1}
        experiments:
          - {name: pool, kind: kernel, kernel: pool2d, variants: [native], sizes: {input: [[32, 32]], pool: [[2, 2]]}}
    """)
    proc = subprocess.run([sys.executable, "-m", "harness", "check", str(suite), "--against", old, "--device", "cpu",
                           "--out", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"against {old[:12]} side by side" in proc.stdout and "1 cases: 1 ok" in proc.stdout, proc.stdout
