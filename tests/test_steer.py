"""Steering a suite from the command line: `--set [NAME.]KEY=VALUE`, suites by name (`run smoke`),
and `-k` as an exact name, a glob or a substring. The errors through a real `python -m harness`
subprocess (exit 2, the exact message, nothing created)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli, write_suite

from harness.core.errors import UserError
from harness.suite import load_suite
from harness.suite.names import select_names

# a kernel and a learn_kernel experiment: `lr` is a field of learn_kernel only, `dtype` of kernel only
MIXED = """
suite: mixed
defaults: {min_run_time_s: 0.01}
experiments:
  - {name: c, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[6, 8]], kernel: [[1, 2]]}}
  - {name: learn, kind: learn_kernel, lr: 0.02, iterations: 3}
  - {name: learn2, kind: learn_kernel, iterations: 3}
"""


@pytest.fixture
def mixed(tmp_path) -> Path:
    return write_suite(tmp_path / "mixed.yaml", MIXED)


def _values(suite, field):
    return {e.id: getattr(e.spec, field, None) for e in suite.experiments}


def test_a_key_sets_every_experiment_whose_kind_has_it_and_name_key_one(mixed):
    suite = load_suite(mixed, overrides=["lr=0.5", "learn2.lr=0.25", "dtype=float64", "seed=4"])
    assert _values(suite, "lr") == {"c": None, "learn": 0.5, "learn2": 0.25}  # over learn's own 0.02
    assert _values(suite, "dtype") == {"c": "float64", "learn": None, "learn2": None}
    assert _values(suite, "seed") == {"c": 4, "learn": 4, "learn2": 4}
    assert load_suite(mixed, overrides=["learn2.lr=0.25", "lr=0.5"]).experiments[2].spec.lr == 0.25  # order-free
    plain = load_suite(mixed)
    assert _values(plain, "lr") == {"c": None, "learn": 0.02, "learn2": 0.03} and plain.overrides == ()


def test_overrides_are_recorded_in_the_resolved_suite_and_loading_it_again_changes_nothing(mixed, tmp_path):
    suite = load_suite(mixed, overrides=["lr=0.5", "learn.iterations=2"], seed=3, select="lea*")
    resolved = suite.resolved()
    # --seed is the override seed=3
    assert resolved["overrides"] == ["seed=3", "lr=0.5", "learn.iterations=2"]
    assert [(e["id"], e["lr"], e["iterations"], e["seed"]) for e in resolved["experiments"]] == \
        [("learn", 0.5, 2, 3), ("learn2", 0.5, 3, 3)]
    assert "overrides" not in load_suite(mixed).resolved()  # a plain run's suite.yaml is as before
    # the resolved document as a suite (without the id and source fields the reproduce work accepts)
    doc = {k: v for k, v in resolved.items() if k != "source"}
    doc["experiments"] = [{k: v for k, v in e.items() if k != "id"} for e in doc["experiments"]]
    again = write_suite(tmp_path / "again.yaml", yaml.safe_dump(doc, sort_keys=False))
    reloaded = load_suite(again)
    assert [e.spec for e in reloaded.experiments] == [e.spec for e in suite.experiments]
    assert reloaded.overrides == suite.overrides
    # the command line wins over the file's overrides, also over a more specific one
    newer = load_suite(again, overrides=["iterations=5"])
    assert _values(newer, "iterations") == {"learn": 5, "learn2": 5}
    assert newer.overrides == ("seed=3", "lr=0.5", "iterations=5")  # learn.iterations=2 no longer applies


def test_a_bad_override_in_the_file_is_named_by_its_place(tmp_path):
    path = write_suite(tmp_path / "o.yaml", MIXED + "overrides: [iterations=2, itrations=2]\n")
    with pytest.raises(UserError) as err:
        load_suite(path)
    assert str(err.value) == (f"{path}: overrides[1] (itrations=2): no experiment in this suite has a field "
                              "'itrations'; did you mean 'iterations'?")


def test_an_override_of_a_matrix_axis_replaces_the_axis(tmp_path):
    path = write_suite(tmp_path / "m.yaml", MIXED + "matrix: {seed: [0, 1], lr: [0.1, 0.2]}\n")
    assert len(load_suite(path).experiments) == 2 + 4 + 4
    suite = load_suite(path, overrides=["learn.lr=0.3", "seed=7"])
    assert [e.id for e in suite.experiments] == ["c", "learn", "learn2[lr=0.1]", "learn2[lr=0.2]"]
    assert _values(suite, "seed") == dict.fromkeys(["c", "learn", "learn2[lr=0.1]", "learn2[lr=0.2]"], 7)
    assert load_suite(path, seed=7).experiments[0].id == "c"  # --seed, as before


def test_a_model_args_mapping_is_set_whole_and_probed(tmp_path):
    path = write_suite(tmp_path / "s.yaml", (REPO / "suites" / "smoke.yaml").read_text())
    suite = load_suite(path, overrides=["vgg_small.model_args={arch: [[1, 16], [1, 32]]}"], select="vgg_small")
    assert suite.experiments[0].spec.model_args == {"arch": [[1, 16], [1, 32]]}
    with pytest.raises(UserError, match=r"--set vgg_small.model_args=\{arc: 1\}: model_args.arc: unknown argument "
                                        r"of model vgg: 'arc' \(known: arch\); did you mean 'arch'\?"):
        load_suite(path, overrides=["vgg_small.model_args={arc: 1}"])


SET_ERRORS = [
    (["--set", "learn.lrr=0.05"], "--set learn.lrr=0.05: experiment 'learn' has no field 'lrr'; did you mean 'lr'?"),
    (["--set", "c.lr=0.05"], "--set c.lr=0.05: experiment 'c' has no field 'lr' (fields: baseline, determinism, "),
    (["--set", "lern.lr=0.05"], "--set lern.lr=0.05: unknown experiment 'lern' (known: c, learn, learn2); "
                                "did you mean 'learn'?"),
    (["--set", "itrations=2"], "--set itrations=2: no experiment in this suite has a field 'itrations'; "
                               "did you mean 'iterations'?"),
    (["--set", "epochs=1"], "--set epochs=1: no experiment in this suite has a field 'epochs' (fields: "),
    (["--set", "iterations=0"], "--set iterations=0: Input should be greater than or equal to 1 (got 0)"),
    (["--set", "learn.lr=fast"], "--set learn.lr=fast: Input should be a valid number, unable to parse string as "
                                 "a number (got 'fast')"),
    # strict numbers: YAML's true is not 1, a quoted "3" is not 3
    (["--set", "iterations=true"], "--set iterations=true: Input should be a valid integer (got True)"),
    (["--set", "learn.lr=false"], "--set learn.lr=false: Input should be a valid number (got False)"),
    (["--set", "iterations='3'"], "--set iterations='3': Input should be a valid integer (got '3')"),
    (["--set", "iterations=2.0"], "--set iterations=2.0: Input should be a valid integer (got 2.0)"),
    (["--set", "c.threads=true"], "--set c.threads=true: Input should be a valid integer (got True)"),
    (["--set", "c.sizes={input: [[6, true]], kernel: [[1, 2]]}"], "--set c.sizes={input: [[6, true]], kernel: "
                                                                  '[[1, 2]]}: {"input": [6, true], "kernel": [1, 2]}: '
                                                                  "input[1]: Input should be a valid integer"),
    (["--set", "c.sizes={input: [[0, 8]], kernel: [[1, 2]]}"], "--set c.sizes={input: [[0, 8]], kernel: [[1, 2]]}: "
                                                               '{"input": [0, 8], "kernel": [1, 2]}: input[0]: '
                                                               "Input should be greater than 0"),
    (["--set", "lr"], "--set lr: not KEY=VALUE or NAME.KEY=VALUE (e.g. --set epochs=1 --set lenet.lr=0.05)"),
    (["--set", "lr=[0.1"], "--set lr=[0.1: VALUE: not valid YAML: expected ',' or ']', but got '<stream end>'"),
    (["--set", "sizes.input=[[4, 4]]"], "--set sizes.input=[[4, 4]]: nested keys are not supported; set the whole "
                                        "field, e.g. --set sizes={...} (the value replaces all of sizes)"),
    (["--set", "name=x"], "--set name=x: an experiment's name cannot be set from the command line (settable: "),
    (["--set", "lr=0.1", "--set", "lr=0.2"], "--set lr=0.2: lr is already set by --set lr=0.1; give it once"),
    (["--seed", "3", "--set", "seed=4"], "--set seed=4: seed is already set by --seed 3; give it once"),
    (["--seed", "3", "--set", "c.seed=4"], "--set c.seed=4: --seed 3 sets every experiment's seed; give one of them"),
]


@pytest.mark.parametrize("flags, message", SET_ERRORS, ids=[" ".join(f) for f, _ in SET_ERRORS])
def test_a_bad_set_exits_2_naming_the_flag(flags, message, mixed):
    proc = run_cli("list", mixed, *flags, cwd=mixed.parent)
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {mixed}: {message}"), proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["-k", "c", "--set", "learn.lr=0.5"],
     "--set learn.lr=0.5: experiment 'learn' is not selected by -k 'c' (selected: c), so this would change nothing; "
     "drop it, or select it: -k 'c or learn'"),
    (["-k", "lea*", "--set", "dtype=float64"],
     "--set dtype=float64: no experiment selected by -k 'lea*' (selected: learn, learn2) has a field 'dtype', so "
     "this would change nothing; drop it"),
])
def test_an_override_that_k_leaves_unused_is_refused_naming_it(flags, message, mixed, tmp_path):
    out = tmp_path / "results"
    proc = run_cli("run", mixed, *flags, "--no-tracking", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {mixed}: {message}"), proc.stderr
    assert not out.exists()
    # without -k, or with -k selecting it, the same override is used
    for select in (None, f"{flags[1]} or c or learn"):
        assert load_suite(mixed, overrides=[flags[-1]], select=select).overrides == (flags[-1],)


def test_a_bad_set_on_run_creates_nothing(mixed, tmp_path):
    out = tmp_path / "results"
    proc = run_cli("run", mixed, "--set", "learn.lrr=1", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--set learn.lrr=1: experiment 'learn' has no field 'lrr'; did you mean 'lr'?" in proc.stderr
    assert not out.exists()


def test_run_records_the_overrides_in_suite_yaml_and_mlflow(mixed, tmp_path, mlflow_uri):
    out = tmp_path / "results"
    proc = run_cli("run", mixed, "--set", "dtype=float64", "-k", "c", "--tracking-uri",
                   mlflow_uri, "--out", out, "--device", "cpu", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (saved,) = out.glob("mixed/*/suite.yaml")
    doc = yaml.safe_load(saved.read_text())
    assert doc["overrides"] == ["dtype=float64"]
    assert [(e["id"], e["dtype"]) for e in doc["experiments"]] == [("c", "float64")]
    import pandas as pd
    from mlflow.tracking import MlflowClient

    rows = pd.read_csv(saved.parent / "results.csv")
    assert set(rows["dtype"]) == {"float64"} and len(rows) == 2
    runs = MlflowClient(mlflow_uri).search_runs([MlflowClient(mlflow_uri).get_experiment_by_name("mixed").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.data.params["overrides"] for r in parent] == ['["dtype=float64"]']
    assert {r.data.params["dtype"] for r in runs if r not in parent} == {"float64"}  # the children's spec params


def test_k_takes_an_exact_name_a_glob_or_a_substring():
    names = ["resnet", "resnet18", "resnext", "lenet"]
    assert select_names("resnet", names) == {"resnet"}  # exact, though a substring of resnet18
    assert select_names("res*", names) == {"resnet", "resnet18", "resnext"}
    assert select_names("*net", names) == {"resnet", "lenet"}  # a glob matches the whole name
    assert select_names("res?et", names) == {"resnet"}
    assert select_names("res", names) == {"resnet", "resnet18", "resnext"}  # substring
    with pytest.raises(UserError, match=r"-k 'Res\*' selects no experiment"):  # case-sensitive
        select_names("Res*", names)
    assert select_names("18", names) == {"resnet18"}


def test_k_on_the_command_line(tmp_path):
    write_suite(tmp_path / "k.yaml", "suite: k\nexperiments:\n" + "".join(
        f"  - {{name: {n}, kind: learn_kernel}}\n" for n in ("resnet", "resnet18", "lenet")))
    listed = {}
    for pattern in ("resnet", "res*", "net", "zzz*"):
        proc = run_cli("list", "k.yaml", "-k", pattern, "--no-estimate", cwd=tmp_path)
        listed[pattern] = (proc.returncode, [line.split()[0] for line in proc.stdout.splitlines()[1:-1]])
    assert listed == {"resnet": (0, ["resnet"]), "res*": (0, ["resnet", "resnet18"]),
                      "net": (0, ["resnet", "resnet18", "lenet"]), "zzz*": (2, [])}
    proc = run_cli("list", "k.yaml", "-k", "zzz*", cwd=tmp_path)
    assert "error: k.yaml: -k 'zzz*' selects no experiment (names: resnet, resnet18, lenet)" in proc.stderr
    help_text = " ".join(run_cli("run", "--help").stdout.split())
    assert ("in pytest's -k grammar: terms joined by or, and, not and parentheses (-k 'lenet or res*', -k 'res* and "
            "not resnext'). A term selects the experiment named so if there is one; else, with * ? or [...], those "
            "whose whole name matches the glob") in help_text
    proc = run_cli("list", "k.yaml", "-k", "resnet or lenet", "--no-estimate", cwd=tmp_path)
    assert proc.returncode == 0 and [line.split()[0] for line in proc.stdout.splitlines()[1:-1]] == ["resnet", "lenet"]


def test_k_is_pytests_grammar_over_names_globs_and_substrings():
    names = ["resnet", "resnet18", "resnext", "lenet", "vgg_small"]
    assert select_names("lenet or res*", names) == {"lenet", "resnet", "resnet18", "resnext"}
    assert select_names("res* and not resnext", names) == {"resnet", "resnet18"}
    assert select_names("not (lenet or vgg*)", names) == {"resnet", "resnet18", "resnext"}
    assert select_names("net and not res", names) == {"lenet"}  # substrings
    assert select_names("not not lenet", names) == select_names("(lenet)", names) == {"lenet"}
    assert select_names("resnet or lenet and not lenet", names) == {"resnet"}  # and binds tighter than or
    assert select_names("resnet", names) == {"resnet"}  # a term naming an experiment exactly selects it alone


@pytest.mark.parametrize("expression, message", [
    ("lenett", "-k 'lenett' selects no experiment (names: resnet, resnet18, lenet); did you mean 'lenet'?"),
    ("lenet or resnett", "-k 'lenet or resnett': 'resnett' selects no experiment (names: resnet, resnet18, lenet); "
                         "did you mean 'resnet'?"),
    ("lenet or", "-k 'lenet or': expected a name or '(' after 'or' at the end; terms joined by or, and, not and "
                 "parentheses, e.g. -k 'lenet or res*', -k 'res* and not resnext'"),
    ("(lenet", "-k '(lenet': the '(' at column 1 is not closed; "),
    ("lenet)", "-k 'lenet)': unexpected ')' at column 6; "),
    ("and lenet", "-k 'and lenet': expected a name or '(' at column 1, got 'and'; "),
    ("lenet resnet", "-k 'lenet resnet': unexpected 'resnet' at column 7; "),
    ("lenet and resnet", "-k 'lenet and resnet' selects no experiment: its terms match names, the expression none "
                         "(names: resnet, resnet18, lenet)"),
])
def test_a_k_that_does_not_parse_or_matches_nothing_exits_2_with_a_hint(expression, message, tmp_path):
    write_suite(tmp_path / "k.yaml", "suite: k\nexperiments:\n" + "".join(
        f"  - {{name: {n}, kind: learn_kernel}}\n" for n in ("resnet", "resnet18", "lenet")))
    proc = run_cli("list", "k.yaml", "-k", expression, "--no-estimate", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: k.yaml: {message}"), proc.stderr


@pytest.mark.parametrize("command", [["list"], ["run", "--no-tracking"], ["launch", "--shards", "1"]])
def test_a_repeated_k_is_refused_with_the_or_hint(command, tmp_path):
    write_suite(tmp_path / "k.yaml", "suite: k\nexperiments:\n  - {name: a, kind: learn_kernel}\n"
                "  - {name: b, kind: learn_kernel}\n")
    proc = run_cli(command[0], "k.yaml", *command[1:], "-k", "a", "-k", "b*", "--out", "out", cwd=tmp_path) \
        if command[0] != "list" else run_cli("list", "k.yaml", "-k", "a", "-k", "b*", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().endswith("error: argument -k: given twice ('a', then 'b*'); give one expression, "
                                         "e.g. -k 'a or b*'"), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.yaml"]


def test_a_suite_by_name_is_found_in_suites_here_then_in_the_repository(tmp_path):
    proc = run_cli("list", "smoke", cwd=tmp_path)  # no suites/ here: the repository's
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("smoke: ") and proc.stdout.rstrip().endswith("4 experiments, 4 rows")
    (tmp_path / "suites").mkdir()
    write_suite(tmp_path / "suites" / "smoke.yaml", "suite: mine\nexperiments:\n  - {name: l, kind: learn_kernel}\n")
    proc = run_cli("list", "smoke", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("mine")  # ./suites first
    proc = run_cli("list", "kernels-ci", cwd=tmp_path)  # only in the repository
    assert proc.returncode == 0 and proc.stdout.startswith("kernels-ci: ")


@pytest.mark.parametrize("command", [["list"], ["run", "--no-tracking"], ["launch", "--shards", "1"],
                                     ["check", "--against", "HEAD"], ["baseline", "--out", "b.json"]])
def test_an_unknown_suite_name_exits_2_listing_the_suites(command, tmp_path):
    proc = run_cli(command[0], "smok", *command[1:], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: smok: no such suite file; as a name: unknown suite 'smok' (known: "
                                  "kernels, kernels-ci, smoke, training, training-fast); did you mean 'smoke'? "
                                  f"(looked in ./suites and {REPO / 'suites'}); give a suite file's path or one "
                                  "of these names"), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created
    proc = run_cli(command[0], "smok.yaml", *command[1:], cwd=tmp_path)  # a file name is not looked up
    assert proc.returncode == 2 and proc.stderr.startswith("error: smok.yaml: no such file")


def test_the_resume_command_of_a_stopped_run_repeats_the_set_flags(tmp_path):
    from harness.cli.runs import _stopped

    args = argparse.Namespace(suite=Path("suites/smoke.yaml"), device="cpu", no_tracking=True, tracking_uri=None,
                              seed=None, select="lenet", data_dir=None, fail_fast=False, download=False,
                              keep_checkpoints=False, overrides=["epochs=1", "lenet.lr=0.5 "])
    err = KeyboardInterrupt()
    err.run_dir, err.rows = tmp_path / "run", 0
    text = _stopped(err, args, argparse.Namespace(tracking_uri=None))
    assert text.endswith(f"python -m harness run suites/smoke.yaml --resume {tmp_path / 'run'} --device cpu "
                         "--no-tracking -k lenet --set epochs=1 --set 'lenet.lr=0.5 '")


def test_launch_passes_the_set_flags_to_every_shard_and_its_resume_refuses_them(tmp_path, monkeypatch):
    from harness.cli import build_parser
    from harness.scale import launch

    seen = {}
    monkeypatch.setattr(launch, "start", lambda *a, **kw: seen.update(run_args=a[4], selection=a[5]) or 0)
    args = build_parser().parse_args(["launch", "suites/smoke.yaml", "--shards", "2", "--set", "epochs=1",
                                      "--set", "lenet.lr=0.5"])
    assert launch.from_cli(args) == 0
    assert seen["run_args"][-4:] == ["--set", "epochs=1", "--set", "lenet.lr=0.5"]
    assert seen["selection"]["overrides"] == ["epochs=1", "lenet.lr=0.5"]  # launch --resume loads it so again
    proc = run_cli("launch", "--resume", tmp_path, "--set", "epochs=1", cwd=tmp_path)
    assert proc.returncode == 2 and "give no --set" in proc.stderr


def test_a_whole_number_is_still_a_float_and_numbers_stay_strict_in_the_file(tmp_path):
    """Strict numbers (core.kinds Int, Float): `lr: 1` is 1.0; `epochs: true` in a file is refused like --set."""
    path = write_suite(tmp_path / "s.yaml", "suite: s\nexperiments:\n  - {name: l, kind: learn_kernel, lr: 1}\n"
                       "  - {name: m, kind: learn_kernel, lr: 1e-3}\n")  # YAML 1.1 reads 1e-3 as a string
    assert [e.spec.lr for e in load_suite(path).experiments] == [1.0, 0.001]
    path = write_suite(tmp_path / "t.yaml", "suite: s\nexperiments:\n  - {name: t, kind: train, model: lenet, "
                       "dataset: fashion_mnist_sample, epochs: true, resize: [32, yes], train_limit: '8'}\n")
    with pytest.raises(UserError) as e:
        load_suite(path)
    assert str(e.value).splitlines() == [
        f"{path}: experiments[0].epochs: Input should be a valid integer (got True)",
        f"{path}: experiments[0].resize[1]: Input should be a valid integer (got True)",
        f"{path}: experiments[0].train_limit: Input should be a valid integer (got '8')"]


NOTED = """
suite: noted
note: Three iterations only, a pipeline check.
experiments:
  - {name: learn, kind: learn_kernel, iterations: 3}
"""


def test_the_note_is_marked_as_written_for_the_suite_as_declared_once_set_changed_it(tmp_path):
    """The note's numbers describe the suite as declared: after --set, a run prints and reports it marked
    with what changed; --seed alone changes no size and leaves it; the run's suite.yaml keeps the mark."""
    path = write_suite(tmp_path / "noted.yaml", NOTED)
    out = tmp_path / "results"
    proc = run_cli("run", path, "--set", "iterations=30", "--no-tracking", "--device", "cpu", "--out", out,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    marked = ("(written for the suite as declared; this run changed it with --set iterations=30) Three iterations "
              "only, a pipeline check.")
    assert f"note: {marked}" in proc.stdout.splitlines()
    (run_dir,) = (out / "noted").iterdir()
    assert f"- **Note:** {marked}" in (run_dir / "report.md").read_text()
    assert load_suite(run_dir / "suite.yaml").note == marked  # reproduce reads the same note
    assert load_suite(run_dir / "suite.yaml", overrides=["iterations=4"]).note == (
        "(written for the suite as declared; this run changed it with --set iterations=4) Three iterations only, "
        "a pipeline check.")  # renewed, not stacked
    assert load_suite(path, seed=5).note == load_suite(path).note == "Three iterations only, a pipeline check."


def test_a_note_at_the_limit_still_loads_with_its_mark_and_one_over_it_does_not(tmp_path):
    import yaml as _yaml

    full = write_suite(tmp_path / "full.yaml", NOTED.replace("Three iterations only, a pipeline check.", "x" * 2000))
    resolved = load_suite(full, overrides=["iterations=4"]).resolved()
    again = write_suite(tmp_path / "again.yaml", _yaml.safe_dump(resolved, sort_keys=False))
    assert load_suite(again).note.endswith("x" * 2000)  # a run's suite.yaml must load (reproduce, --resume)
    over = write_suite(tmp_path / "over.yaml", NOTED.replace("Three iterations only, a pipeline check.", "x" * 2001))
    with pytest.raises(UserError, match=r"over.yaml: note: String should have at most 2000 characters"):
        load_suite(over)
