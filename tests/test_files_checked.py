"""Every file a command reads back from a run directory is validated before use
(harness.run.runfiles): results, steps.csv, state.json, env.json, suite.yaml. One damaged file,
named on the command line (its run directory given): exit 2 and one line naming the file and what
is wrong, no traceback, nothing written; found under a results root: a warning naming it and the
other runs go on. Real run directories (two shards of a small suite, run through the CLI), each
file damaged as a full disk, a bad copy or another tool would: cut short, not UTF-8, foreign
columns or fields, wrong types, nested 100,000 levels deep, over the size bound.
In-process (harness.cli.main): this is input validation."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli, write_suite

from harness import cli
from harness.run import results, runfiles

SUITE = """
    suite: kfiles
    defaults: {seed: 0, dtype: float32, min_run_time_s: 0.001, threads: 1}
    experiments:
      - {name: a, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[6, 6]], kernel: [[2, 2]]}}
      - {name: b, kind: kernel, kernel: corr2d, variants: [vectorized], sizes: {input: [[5, 5]], kernel: [[2, 2]]}}
      - {name: c, kind: learn_kernel, iterations: 2}
"""
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shard run directories of SUITE: shard 0 (a, c: with a steps.csv) and shard 1 (b)."""
    root = tmp_path_factory.mktemp("files")
    suite = write_suite(root / "s.yaml", SUITE)
    dirs = []
    for i in (0, 1):
        r = run_cli("run", suite, "--shard", f"{i}/2", "--no-tracking", "--out", root / str(i))
        assert r.returncode == 0, r.stderr
        dirs.append(next((root / str(i) / "kfiles").iterdir()))
    assert (dirs[0] / "steps.csv").is_file()
    return dirs


def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _parquet(path, **columns):
    """The run's results rewritten with `columns` replaced or added (pandas decides their types)."""
    results.load(path.parent).assign(**columns).to_parquet(path, index=False)


def _csv_cell(path, column: str, value: str):
    import pandas as pd

    df = pd.read_csv(path, dtype=str)
    df.loc[0, column] = value
    df.to_csv(path, index=False)


DAMAGE = {  # (file, damage): (how, what the message says after "<file>: ")
    ("results.parquet", "cut"): (_cut, "not a readable results file (ArrowInvalid: "),
    ("results.parquet", "foreign column"): (lambda p: _parquet(p, price=1.5),
                                            "not a harness results file (columns not in its schema: price)"),
    ("results.parquet", "wrong type"): (lambda p: _parquet(p, seed="zero"),
                                        "damaged results file: column seed, row 1: 'zero' is not a whole number"),
    ("results.parquet", "number as text"): (lambda p: _parquet(p, device=5),
                                            "damaged results file: column device, row 1: 5 is not text"),
    ("results.parquet", "config not JSON"): (lambda p: _parquet(p, config="in=6x6"),
                                             "damaged results file: column config, row 1: 'in=6x6' is not a JSON "
                                             "object"),
    ("results.csv", "learned kernel not numbers"): (lambda p: _csv_cell(p, "learned_kernel", '["a"]'),
                                                    "damaged results file: column learned_kernel, row 1: '[\"a\"]' "
                                                    "is not a JSON list of numbers"),
    ("results.csv", "device '5'"): (lambda p: _csv_cell(p, "device", "5"),
                                    "damaged results file: column device, row 1: '5' is not a device (valid: cpu, "),
    ("results.parquet", "fingerprints not texts"): (lambda p: _parquet(p, epoch_fingerprints="[[1]]"),
                                                    "damaged results file: column epoch_fingerprints, row 1: "
                                                    "'[[1]]' is not a JSON list of fingerprints"),
    ("merge.json", "deep"): (lambda p: p.write_text(DEEP), "nested deeper than 8 levels, not a merge.json"),
    ("merge.json", "a list"): (lambda p: p.write_text("[]"), "not a merge.json (a JSON list, not an object)"),
    ("results.csv", "bad boolean"): (lambda p: _csv_cell(p, "git_dirty", "maybe"),
                                     "damaged results file: column git_dirty, row 1: 'maybe' is not True or False"),
    ("steps.csv", "not UTF-8"): (lambda p: p.write_bytes(b"\xff\xfe\x00garbage\n"),
                                 "not a readable steps.csv (UnicodeDecodeError: "),
    ("steps.csv", "empty"): (lambda p: p.write_bytes(b""), "not a readable steps.csv (EmptyDataError: "),
    ("steps.csv", "cut"): (lambda p: p.write_text(p.read_text().rsplit(",", 2)[0] + "\n"),
                           "damaged steps.csv: line 3, column metric: missing (a line cut short?)"),
    ("steps.csv", "foreign column"): (lambda p: p.write_text("".join(
        line.rstrip("\n") + (",rank\n" if i == 0 else ",0\n") for i, line in enumerate(p.open()))),
                                      "not a harness steps.csv (columns not in it: rank; valid: experiment, "),
    ("steps.csv", "wrong type"): (lambda p: p.write_text(p.read_text().replace(",0,1,loss,", ",0,one,loss,")),
                                  "damaged steps.csv: line 2, column step: 'one' is not a whole number"),
    ("state.json", "cut"): (_cut, "not a run's state.json (not readable JSON: "),
    ("state.json", "foreign"): (lambda p: p.write_text('{"version": 3, "jobs": []}'), "damaged: run_id: missing"),
    ("state.json", "wrong type"): (lambda p: p.write_text(p.read_text().replace('"finished": true',
                                                                                 '"finished": "yes"')),
                                   "damaged: finished: Input should be a valid boolean (got 'yes')"),
    ("state.json", "duplicate key"): (lambda p: p.write_text(p.read_text().replace('{', '{"run_id": "x", ', 1)),
                                      "not a run's state.json (not readable JSON: duplicate key 'run_id'"),
    ("state.json", "deep"): (lambda p: p.write_text(DEEP), "nested deeper than 16 levels, not a run's state.json"),
    ("env.json", "not UTF-8"): (lambda p: p.write_bytes(b'{"device": "\xff"}'),
                                "not a run's env.json (not readable JSON: 'utf-8' codec can't decode byte 0xff"),
    ("env.json", "deep"): (lambda p: p.write_text('{"argv": ' + DEEP + "}"),
                           "nested deeper than 16 levels, not a run's env.json"),
    ("env.json", "device 5"): (lambda p: p.write_text(json.dumps(json.loads(p.read_text()) | {"device": 5})),
                               "damaged: device: Input should be a valid string (got 5)"),
    ("env.json", "device '5'"): (lambda p: p.write_text(json.dumps(json.loads(p.read_text()) | {"device": "5"})),
                                 "damaged: device: '5' is not a device (valid: cpu, cuda, cuda:N, mps)"),
    ("suite.yaml", "not UTF-8"): (lambda p: p.write_bytes(b"suite: \xff\n"), "cannot read: 'utf-8' codec"),
    ("suite.yaml", "deep"): (lambda p: p.write_text("suite: " + DEEP), "nested deeper than 32 levels"),
}
READS = {  # command -> the files it reads from the run directory it is given
    "merge": {"results.parquet", "results.csv", "steps.csv", "state.json", "env.json", "suite.yaml"},
    "reproduce": {"results.parquet", "results.csv", "steps.csv", "state.json", "env.json", "suite.yaml", "merge.json"},
    "report": {"results.parquet", "results.csv"},
    "dashboard": {"results.parquet", "results.csv"},
    "sync": {"results.parquet"},  # (the journal logged both results files: one missing is refused first)
}
CASES = [(command, file, damage) for command, files in READS.items() for (file, damage) in DAMAGE if file in files]


def argv(command: str, run, other, out, tmp_path) -> list[str]:
    return {"merge": ["merge", str(run), str(other), "--out", str(out)],
            "reproduce": ["reproduce", str(run), "--no-tracking", "--out", str(out)],
            "report": ["report", str(run), "--out", str(out)],
            "dashboard": ["dashboard", str(run), "--out", str(out)],
            "sync": ["sync", str(run), "--tracking-uri", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"]}[command]


@pytest.mark.parametrize("command,file,damage", CASES, ids=[f"{c}-{f}-{d}" for c, f, d in CASES])
def test_a_damaged_file_of_a_named_run_is_exit_2_naming_it(shards, tmp_path, capsys, command, file, damage):
    run, other = shutil.copytree(shards[0], tmp_path / "s0"), shutil.copytree(shards[1], tmp_path / "s1")
    if file == "results.csv":
        (run / "results.parquet").unlink()  # the CSV is the file read
    how, says = DAMAGE[(file, damage)]
    how(run / file)
    out = tmp_path / "out"
    code = cli.main(argv(command, run, other, out, tmp_path))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: {run / file}:") and says in err, err  # suite.yaml's say file:line:col:
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize("file,damage", [k for k in DAMAGE if k[0].startswith("results")],
                         ids=[f"{f}-{d}" for f, d in DAMAGE if f.startswith("results")])
@pytest.mark.parametrize("command", ["report", "dashboard"])
def test_a_damaged_results_file_under_a_root_is_warned_and_the_rest_goes_on(shards, tmp_path, capsys, command,
                                                                             file, damage):
    root = tmp_path / "results" / "kfiles"
    run, good = shutil.copytree(shards[0], root / shards[0].name), shutil.copytree(shards[1], root / shards[1].name)
    if file == "results.csv":
        (run / "results.parquet").unlink()
    how, says = DAMAGE[(file, damage)]
    how(run / file)
    out = tmp_path / ("site" if command == "dashboard" else "report.md")
    code = cli.main([command, str(tmp_path / "results"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.startswith(f"warning: {run / file}: {says}") and err.endswith("; skipped\n"), err
    assert len(err.splitlines()) == 1, err
    text = (out / "index.html" if command == "dashboard" else out).read_text()
    assert good.name in text and run.name not in text


@pytest.mark.parametrize("file", ["state.json", "env.json", "results.parquet", "steps.csv"])
def test_a_file_over_its_size_bound_is_refused_unread(shards, tmp_path, capsys, monkeypatch, file):
    run, other = shutil.copytree(shards[0], tmp_path / "s0"), shutil.copytree(shards[1], tmp_path / "s1")
    if file.startswith("results"):
        monkeypatch.setattr(results, "MAX_FILE_BYTES", 100)
    else:
        monkeypatch.setitem(runfiles.MAX_BYTES, file, 100)
    code = cli.main(["merge", str(run), str(other), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    size = (run / file).stat().st_size
    assert err.startswith(f"error: {run / file}: {size:,} bytes, larger than 100 bytes, the most a"), err
    assert not (tmp_path / "out").exists()


def test_the_readers_return_what_the_run_wrote(shards):
    """The validated readers change nothing of a good file: steps values are the floats as written."""
    import csv

    run = shards[0]
    steps = runfiles.read_steps(run / "steps.csv")
    with (run / "steps.csv").open() as f:
        raw = list(csv.DictReader(f))
    assert steps["value"].tolist() == [float(r["value"]) for r in raw] and len(raw) == 2
    assert steps["step"].tolist() == [int(r["step"]) for r in raw]
    assert runfiles.read_state(run / "state.json") == json.loads((run / "state.json").read_text())
    assert runfiles.read_env(run / "env.json") == json.loads((run / "env.json").read_text())
    assert runfiles.read_results(run / "results.csv").equals(runfiles.read_results(run / "results.parquet"))


def _foreign_sqlite(path):
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    db.close()


STORES = {  # how the store file is damaged: (make it, what the message says after "MLflow store <file>: ")
    "another program's database": (_foreign_sqlite, "an SQLite database of another program (its tables: invoices;"),
    "cut": (lambda p: (shutil.copyfile(MIGRATED[0], p), _cut(p)), "a damaged SQLite database ("),
    "not SQLite": (lambda p: p.write_bytes(b"\x00garbage" * 100), "not an SQLite database (damaged, or another"),
}
MIGRATED: list = []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("damage", list(STORES))
@pytest.mark.parametrize("command", ["ui", "report", "reproduce"])
def test_a_damaged_or_foreign_mlflow_store_is_exit_2_naming_it_and_left_unchanged(tmp_path, _migrated_store,
                                                                                   command, damage):
    MIGRATED[:] = [_migrated_store]
    store = tmp_path / "mlflow.db"
    make, says = STORES[damage]
    make(store)
    before = store.read_bytes()
    uri = f"sqlite:///{store}"
    args = {"ui": ["ui", "--tracking-uri", uri, "--port", str(_free_port())],
            "report": ["report", "--from-mlflow", "--tracking-uri", uri],
            "reproduce": ["reproduce", "0123456789abcdef0123456789abcdef", "--tracking-uri", uri]}[command]
    proc = run_cli(*args, timeout=120)  # a process: before, `ui` started the server on the foreign file
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: MLflow store {store}: {says}"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert store.read_bytes() == before  # no migration added MLflow's tables to another program's file


def test_a_run_in_the_store_that_run_did_not_log_is_warned_and_the_report_goes_on(mlflow_uri, capsys):
    """report --from-mlflow over a shared store: a child run with a seed that is not a number (logged
    by another client) is named in a warning and skipped; the others are reported."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("kfiles")
    parent = client.create_run(exp, run_name="20260101T000000Z-aaaaaa", tags={"device": "cpu", "cpu_model": "CPU"})
    ids = {}
    for seed in ("0", "zero", "1"):
        child = client.create_run(exp, run_name=f"a/native/{seed}", tags={
            "mlflow.parentRunId": parent.info.run_id, "kind": "kernel", "experiment": "a", "family": "corr2d",
            "variant": "native", "size": "in=6x6 k=2x2", "determinism": "strict"})
        client.log_param(child.info.run_id, "seed", seed)
        client.log_metric(child.info.run_id, "time_median_s", 1e-5)
        client.set_terminated(child.info.run_id)
        ids[seed] = child.info.run_id
    client.set_terminated(parent.info.run_id)
    code = cli.main(["report", "--from-mlflow", "--tracking-uri", mlflow_uri, "--format", "csv"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == (f"warning: MLflow run {ids['zero']} (a/native/zero) in {mlflow_uri}: not a row `run` logs "
                   f"(ValueError: invalid literal for int() with base 10: 'zero'); skipped\n"), err
    assert "corr2d" in out and "native" in out


RESUMED = [k for k in DAMAGE if k[0] in ("state.json", "suite.yaml", "steps.csv", "results.parquet", "env.json")]


@pytest.mark.parametrize("file,damage", RESUMED, ids=[f"{f}-{d}" for f, d in RESUMED])
def test_resume_of_a_run_with_a_damaged_file_is_exit_2_naming_it_and_changes_nothing(shards, tmp_path, capsys,
                                                                                     file, damage):
    run = shutil.copytree(shards[0], tmp_path / "s0")
    how, says = DAMAGE[(file, damage)]
    how(run / file)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    suite = write_suite(tmp_path / "s.yaml", SUITE)
    code = cli.main(["run", str(suite), "--shard", "0/2", "--resume", str(run), "--no-tracking"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: {run / file}:") and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_reproduce_by_mlflow_id_of_a_run_directory_with_a_damaged_state_json_is_exit_2(mlflow_uri, tmp_path, capsys):
    """The run directory a parent run names (its run_dir tag) is used only when its state.json, read
    validated, names that run: one nested 100,000 levels deep is not, and the run has no artifacts."""
    from mlflow.tracking import MlflowClient

    run = tmp_path / "results" / "kfiles" / "20260101T000000Z-aaaaaa"
    run.mkdir(parents=True)
    (run / "state.json").write_text(DEEP)
    (run / "suite.yaml").write_text("suite: kfiles\nexperiments: []\n")
    client = MlflowClient(tracking_uri=mlflow_uri)
    parent = client.create_run(client.create_experiment("kfiles"), run_name=run.name, tags={"run_dir": str(run)})
    client.set_terminated(parent.info.run_id)
    code = cli.main(["reproduce", parent.info.run_id, "--tracking-uri", mlflow_uri, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: MLflow run {parent.info.run_id} in {mlflow_uri}: its run directory {run} is not"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


LAUNCH = {  # launch.json damaged: (its text, what the message says after "<file>: ")
    "deep": (DEEP, "nested deeper than 16 levels, not a launch.json"),
    "cut": ('{"suite_path": "s.yaml", "jobs": [{"ind', "not a launch.json (not readable JSON: "),
    "foreign": ('{"name": "x", "version": 2}', "not a launch.json `launch` wrote: suite_path: Field required"),
    "selection": (None, "not a launch.json `launch` wrote: selection.select_all: Extra inputs are not permitted"),
}


@pytest.mark.parametrize("damage", list(LAUNCH))
def test_launch_resume_of_a_damaged_launch_json_is_exit_2_naming_it(tmp_path, capsys, damage):
    launch_dir = tmp_path / "kfiles" / "20260101T000000Z-launch-aaaaaa"
    launch_dir.mkdir(parents=True)
    text, says = LAUNCH[damage]
    if text is None:  # what `launch` writes, with a keyword load_suite does not take
        text = json.dumps({"suite": "kfiles", "suite_path": str(write_suite(tmp_path / "s.yaml", SUITE)),
                           "cwd": str(tmp_path), "shards": 2, "launcher": "local", "run_args": [],
                           "options": {"gpus": 0, "partition": None, "time_min": None},
                           "selection": {"seed": None, "select": None, "select_all": True},
                           "out": str(tmp_path), "tracking": False, "tracking_uri": None, "status": "running",
                           "jobs": []})
    (launch_dir / "launch.json").write_text(text)
    code = cli.main(["launch", "--resume", str(launch_dir)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: {launch_dir / 'launch.json'}: {says}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("config", ["{}", '{"input": "6x6"}', '{"input": [6, 6], "channels": "three"}'])
def test_dashboard_of_a_kernel_row_without_an_input_size_draws_the_rest(shards, tmp_path, capsys, config):
    """A kernel row whose config holds no C·H·W input (a plugin family's, or edited) is a JSON object the
    results schema accepts; the dashboard leaves its point out instead of ending in a KeyError."""
    run = shutil.copytree(shards[0], tmp_path / "s0")
    df = results.load(run)
    df.loc[df["kind"] == "kernel", "config"] = config
    df.to_parquet(run / "results.parquet", index=False)
    code = cli.main(["dashboard", str(run), "--out", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert "Kernel experiment a" in (tmp_path / "site" / "index.html").read_text()


def test_sync_of_a_folder_skips_a_damaged_run_directory_with_a_warning_and_syncs_the_rest(shards, tmp_path):
    """Found below a folder: the damaged run directory is named and skipped, the others are synced,
    exit 1 (something given was not synced); named itself, it is exit 2 (the parametrised test above)."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path / "copied"
    bad, good = (shutil.copytree(d, folder / "kfiles" / d.name) for d in shards)
    _cut(bad / "results.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli("sync", folder, "--tracking-uri", uri)
    assert proc.returncode == 1, proc.stderr
    warning, summary = [line for line in proc.stderr.strip().splitlines() if " INFO mlflow" not in line]
    assert warning.startswith(f"warning: {bad / 'results.parquet'}: not a readable results file (ArrowInvalid: ")
    assert warning.endswith("; nothing was synced; skipped") and summary.startswith("1 run directory skipped (named")
    assert f"synced {good}: " in proc.stdout and str(bad) not in proc.stdout
    names = {r.info.run_name for r in MlflowClient(tracking_uri=uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=uri).search_experiments()])}
    assert good.name in names and bad.name not in names


def test_launch_progress_skips_journal_lines_that_are_not_records(tmp_path):
    """The live progress counts a shard's ended child runs from its journal while it is written; a
    line nested 100,000 levels deep or a JSON list (a damaged or foreign file) is not a record."""
    from harness.scale.progress import rows_done

    lines = ['{"op": "start", "id": "p"}', '[1, "end"]', '{"end": ' + DEEP + "}",
             '{"op": "end", "id": "c1", "status": "FINISHED"}', '{"op": "end", "id": "p", "status": "FINISHED"}']
    (tmp_path / "tracking.jsonl").write_text("\n".join(lines) + "\n")
    assert rows_done(tmp_path) == 1
