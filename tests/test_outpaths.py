"""Every command's `--out` follows one rule (harness.run.rundir.check_out): a results root that gets a
new run directory, or a new path; never an existing run directory or a path inside one, never a suite
directory taken for a results root, never a file where a directory is meant or a directory where a
file is. A refusal is exit 2, one line naming the flag and what is valid, and nothing changed."""
from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli, write_suite

from harness.cli import main

SUITE = """
    suite: kout
    defaults: {seed: 0, dtype: float32, min_run_time_s: 0.001, threads: 1}
    experiments:
      - {name: a, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[6, 6]], kernel: [[2, 2]]}}
      - {name: b, kind: kernel, kernel: corr2d, variants: [vectorized], sizes: {input: [[5, 5]], kernel: [[2, 2]]}}
      - {name: c, kind: learn_kernel, iterations: 2}
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A results root holding the suite as two shard runs: (root, suite file, [shard 0, shard 1])."""
    root = tmp_path_factory.mktemp("outpaths")
    suite = write_suite(root / "s.yaml", SUITE)
    for shard in ("0/2", "1/2"):
        r = run_cli("run", suite, "--shard", shard, "--no-tracking", "--out", root / "results")
        assert r.returncode == 0, r.stderr
    return root / "results", suite, sorted((root / "results" / "kout").iterdir())


def tree(path):
    """Every file below `path` with a hash of its bytes: what 'nothing changed' compares."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}


def refused(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --out ") and "Traceback" not in err, err
    return err.strip()


def test_merge_out_an_existing_run_directory_is_refused_and_leaves_it_as_it_was(shards):
    root, _, (s0, s1) = shards
    before = tree(root)
    r = run_cli("merge", s0, s1, "--out", s0)  # a real process, as the issue found it
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: --out {s0}: is a run directory (it holds state.json), and no command "
                                f"writes into one; give a results root, which gets a new run directory "
                                f"<suite>/<UTC time>-merged-<id>, or a new path (e.g. results/)")
    assert tree(root) == before


def test_merge_out_a_results_root_gets_a_new_run_directory_below_it_and_report_still_sees_every_run(shards, tmp_path):
    import shutil

    root = shutil.copytree(shards[0], tmp_path / "results")
    s0, s1 = sorted((root / "kout").iterdir())
    r = run_cli("merge", s0, s1, "--out", root)
    assert r.returncode == 0, r.stderr
    merged = [d for d in (root / "kout").iterdir() if "-merged-" in d.name]
    assert len(merged) == 1 and not (root / "results.parquet").exists() and not (root / "env.json").exists()
    from harness.run import results

    assert len(results.load(merged[0])) == 4  # 3 experiments, a with 2 variants
    from harness.views.compare import find_runs

    assert find_runs([root]) == sorted([s0, s1, merged[0]])  # what report and dashboard read: none hidden
    # merging the whole root again (the merged run is no shard) still counts 4 rows
    r = run_cli("merge", root, "--out", tmp_path / "again")
    assert r.returncode == 0 and r.stdout.startswith("4 rows from 2 of 2 shards"), r.stdout + r.stderr


def test_merge_out_a_file_or_a_suite_directory_or_inside_a_run_is_exit_2(shards, tmp_path, capsys):
    root, _, (s0, s1) = shards
    before = tree(root)
    (tmp_path / "f.txt").write_text("x")
    err = refused(capsys, "merge", s0, s1, "--out", tmp_path / "f.txt")
    assert err == (f"error: --out {tmp_path / 'f.txt'}: is a file, not a directory; give a results root, which gets "
                   f"a new run directory <suite>/<UTC time>-merged-<id>, or a new path (e.g. results/)")
    assert "is a suite directory (it holds the run directory" in refused(capsys, "merge", s0, s1, "--out", root / "kout")
    assert f"is inside the run directory {s0}" in refused(capsys, "merge", s0, s1, "--out", s0 / "sub")
    assert f"{tmp_path / 'f.txt'} is a file" in refused(capsys, "merge", s0, s1, "--out", tmp_path / "f.txt" / "m")
    assert tree(root) == before and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


@pytest.mark.parametrize("command", ["run", "reproduce", "launch"])
def test_every_command_writing_a_run_refuses_a_run_directory_or_a_suite_directory_as_its_results_root(
        shards, capsys, command):
    root, suite, (s0, s1) = shards
    before = tree(root)
    first = {"run": [suite, "--no-tracking"], "reproduce": [s0, "--no-tracking"],
             "launch": [suite, "--shards", "2", "--no-tracking"]}[command]
    err = refused(capsys, command, *first, "--out", s1)
    assert "is a run directory (it holds state.json), and no command writes into one" in err
    assert "is a suite directory" in refused(capsys, command, *first, "--out", root / "kout")
    assert tree(root) == before


def test_sync_out_a_run_directory_is_refused(shards, capsys):
    root, _, (s0, s1) = shards  # sync's --out holds the store (mlflow.db, mlartifacts/): a directory, any but a run
    before = tree(root)
    assert refused(capsys, "sync", s0, "--out", s1) == (
        f"error: --out {s1}: is a run directory (it holds state.json), and no command writes into one; give the "
        f"directory to write into (e.g. results/)")
    assert "is inside the run directory" in refused(capsys, "sync", s0, "--out", s1 / "store")
    assert tree(root) == before


def test_report_out_a_directory_or_a_file_inside_a_run_is_refused_before_anything_is_read(shards, capsys, tmp_path):
    root, _, (s0, _) = shards
    before = tree(root)
    assert refused(capsys, "report", root, "--out", tmp_path) == (
        f"error: --out {tmp_path}: is a directory; --out names the file to write, e.g. {tmp_path / 'report.md'}")
    err = refused(capsys, "report", root, "--out", s0 / "report.md")  # would replace the run's own report
    assert err == (f"error: --out {s0 / 'report.md'}: is inside the run directory {s0}; write outside any run "
                   f"directory: give the file to write (e.g. report.md)")
    assert tree(root) == before
    for _ in range(2):  # a new file, then the report it wrote replaced
        assert main(["report", str(root), "--out", str(tmp_path / "r.md")]) == 0 and (tmp_path / "r.md").is_file()


def test_dashboard_out_a_run_directory_or_a_file_is_refused(shards, capsys, tmp_path):
    root, _, (s0, _) = shards
    before = tree(root)
    (tmp_path / "f.txt").write_text("x")
    assert "is a run directory" in refused(capsys, "dashboard", root, "--out", s0)
    assert "is inside the run directory" in refused(capsys, "dashboard", root, "--out", s0 / "site")
    assert refused(capsys, "dashboard", root, "--out", tmp_path / "f.txt") == (
        f"error: --out {tmp_path / 'f.txt'}: is a file, not a directory; give the directory to write into "
        f"(e.g. dashboards/site)")
    assert tree(root) == before and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
