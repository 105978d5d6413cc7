"""A damaged or foreign results file in a results root: `report` and `dashboard` over the root name
it in a warning on stderr and read the others; named itself, it is an error (exit 2). Never a
traceback. Real subprocesses over real results files (tests/synthetic_runs.py) and damaged ones."""
from __future__ import annotations

import pytest
from conftest import run_cli
from synthetic_runs import KA, kernel_rows, write_runs

from harness.run import results

DAMAGED = {  # run directory name -> (file, why the warning gives)
    "20260103T000000Z-garbag": ("results.parquet", "not a readable results file (ArrowInvalid: "),
    "20260103T000000Z-trunca": ("results.parquet", "not a readable results file (ArrowInvalid: "),
    "20260103T000000Z-othert": ("results.csv", "results schema_version none, this harness reads 1"),
    "20260103T000000Z-schema": ("results.parquet", "results schema_version 2, this harness reads 1"),
    "20260103T000000Z-binary": ("results.csv", "not a readable results file (UnicodeDecodeError: "),
}
ZERO_ROWS = "20260103T000000Z-zerorw"


def damage(root, name: str):
    """One damaged results file under root/ks/<name>; returns its run directory."""
    run = root / "ks" / name
    run.mkdir(parents=True)
    if name.endswith("garbag"):
        (run / "results.parquet").write_bytes(b"this is not a parquet file\n" * 10)
    elif name.endswith("trunca"):
        results.save([], run)  # a real file, cut short as by a full disk or an interrupted copy
        (run / "results.csv").unlink()
        data = (run / "results.parquet").read_bytes()
        (run / "results.parquet").write_bytes(data[: len(data) // 2])
    elif name.endswith("othert"):
        (run / "results.csv").write_text("date,open,high,low,close\n2026-01-02,10.5,11,10,10.8\n")
    elif name.endswith("schema"):
        results.to_frame(kernel_rows(KA)).assign(schema_version=2).to_parquet(run / "results.parquet", index=False)
    elif name.endswith("binary"):
        (run / "results.csv").write_bytes(b"schema_version,suite\n1,\xff\xfe\x00ks\n")
    elif name == ZERO_ROWS:
        results.save([], run)  # a run that wrote no row; readable or not, it adds no run
    return run


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "results"
    write_runs(root)
    for name in [*DAMAGED, ZERO_ROWS]:
        damage(root, name)
    return root


def warnings(stderr: str) -> dict[str, str]:
    """file -> the rest of its warning line; every stderr line is a warning."""
    lines = stderr.strip().splitlines()
    assert all(line.startswith("warning: ") and line.endswith("; skipped") for line in lines), stderr
    return dict(line.removeprefix("warning: ").split(": ", 1) for line in lines)


def assert_each_damaged_file_warned(root, stderr):
    assert "Traceback" not in stderr
    warned = warnings(stderr)
    for name, (file, why) in DAMAGED.items():
        assert why in warned.pop(str(root / "ks" / name / file)), stderr
    # a 0-row file the harness wrote: skipped while results.load refuses it, read (as no rows) once it does not
    assert set(warned) <= {str(root / "ks" / ZERO_ROWS / "results.parquet")}, stderr


def test_report_over_a_root_warns_of_each_damaged_file_and_reports_the_rest(root):
    proc = run_cli("report", root)
    assert proc.returncode == 0, proc.stderr
    assert_each_damaged_file_warned(root, proc.stderr)
    assert "# Results of 4 runs" in proc.stdout and "## Kernel corr2d" in proc.stdout


def test_dashboard_over_a_root_warns_of_each_damaged_file_and_draws_the_rest(root, tmp_path):
    proc = run_cli("dashboard", root, "--out", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    assert_each_damaged_file_warned(root, proc.stderr)
    page = (tmp_path / "site" / "index.html").read_text()
    assert "From 2 run(s)" in page and "garbag" not in page


def test_a_suite_folder_is_a_root_too(root):
    proc = run_cli("report", root / "ks", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert_each_damaged_file_warned(root, proc.stderr)


@pytest.mark.parametrize("name", [*DAMAGED, ZERO_ROWS])
def test_a_damaged_run_named_itself_is_an_error(tmp_path, name):
    root = tmp_path / "results"
    write_runs(root)
    run = damage(root, name)
    # a good run beside it does not make up for it; a 0-row file alone: unreadable, or no results
    proc = run_cli("report", *([root / "ks" / KA] if name in DAMAGED else []), run)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith("error: ") and str(run) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if name in DAMAGED:
        file, why = DAMAGED[name]
        assert proc.stderr.startswith(f"error: {run / file}: {why}"), proc.stderr


@pytest.mark.parametrize("name", ["20260103T000000Z-garbag", "20260103T000000Z-othert"])
def test_dashboard_of_a_damaged_file_named_itself_is_an_error(tmp_path, name):
    run = damage(tmp_path, name)
    file, why = DAMAGED[name]
    proc = run_cli("dashboard", run / file, "--out", tmp_path / "site")
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith(f"error: {run / file}: {why}") and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "site").exists()


def test_a_root_of_damaged_files_only_says_so(tmp_path):
    for name in DAMAGED:
        damage(tmp_path / "results", name)
    proc = run_cli("report", tmp_path / "results")
    assert proc.returncode == 2, proc.stdout
    assert len(warnings(proc.stderr.rsplit("error: ", 1)[0])) == len(DAMAGED)
    assert (f"error: {tmp_path / 'results'}: no readable results ({len(DAMAGED)} results file(s) skipped, "
            f"named above)") in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage\n\x00\x01", b"a,b\n1,2\n", b"",
                                     b"experiment,seed,step,metric,value\nlenet,1,one,val_acc,x\n"])
def test_dashboard_warns_of_a_damaged_steps_file_and_draws_the_rest(tmp_path, content):
    root = tmp_path / "results"
    dirs = write_runs(root)
    damaged = next(d for d in dirs.values() if (d / "steps.csv").is_file())
    (damaged / "steps.csv").write_bytes(content)
    proc = run_cli("dashboard", root, "--out", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"warning: {damaged / 'steps.csv'}: ") and line.endswith("training curves are left out"), line
    assert "Training curves" in (tmp_path / "site" / "index.html").read_text()
