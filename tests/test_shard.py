"""Shards (harness.suite.shard, `run --shard`) and `merge` (harness.scale.merge): the partition, its
errors, the shard recorded in the run directory, and merge refusing a missing, duplicated or foreign
shard."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli, write_suite

from harness.core.errors import UserError
from harness.suite.shard import WHOLE, Shard, parse_shard

SUITE = """
    suite: kshards
    defaults: {seed: 0, dtype: float32, min_run_time_s: 0.001, threads: 1}
    experiments:
      - {name: a, kind: kernel, kernel: corr2d, variants: [vectorized, native], sizes: {input: [[6, 6]], kernel: [[2, 2]]}}
      - {name: b, kind: kernel, kernel: corr2d, variants: [vectorized], sizes: {input: [[5, 5]], kernel: [[2, 2]]}}
      - {name: c, kind: learn_kernel, iterations: 2}
"""


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 13, 50])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 9, 10, 31, 100])
def test_the_shards_are_disjoint_their_union_is_the_suite_in_order_and_balanced(n, count):
    items = [f"e{j}" for j in range(n)]
    parts = [Shard(i, count).select(items) for i in range(count)]
    assert sorted(x for p in parts for x in p) == sorted(items)  # union, and no item twice
    assert sum(map(len, parts)) == n
    assert all(p == [x for x in items if x in p] for p in parts)  # each keeps the suite's order
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert all(items.index(x) % count == i for i, p in enumerate(parts) for x in p)  # the documented rule
    assert [Shard(i, count).select(items) for i in range(count)] == parts  # deterministic
    assert WHOLE.select(items) == items


def test_parse_shard_forms_and_slurm_arrays():
    assert parse_shard("0/1", {}) == WHOLE and str(parse_shard(" 3 / 4 ", {})) == "3/4"
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard("auto", env) == Shard(2, 4)
    assert parse_shard("auto", env | {"SLURM_ARRAY_TASK_MIN": "1"}) == Shard(1, 4)  # --array=1-4
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3",
                                "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}) == Shard(2, 3)
    for bad, words in (("2/2", "not below"), ("0/0", "at least 1"), ("x", "not a shard"), ("-1/2", "not a shard"),
                       ("1/2/3", "not a shard"), ("", "not a shard"),
                       ("１/２", "not a shard; I and N are written in ASCII digits 0-9"),  # full-width digits
                       ("٠/٢", "not a shard; I and N are written in ASCII digits"), ("1_0/20", "not a shard")):
        with pytest.raises(UserError, match=words) as e:
            parse_shard(bad, {})
        assert str(e.value).startswith(f"--shard {bad}")
    with pytest.raises(UserError, match="SLURM_ARRAY_TASK_COUNT is not set"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0"})
    with pytest.raises(UserError, match=r"SLURM_ARRAY_TASK_ID='１' is not an integer \(ASCII digits\)"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "１", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(UserError, match="not one of 2 evenly spaced"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "2"})


@pytest.mark.parametrize("shard,words", [("2/2", "not below the number of shards"), ("0/0", "at least 1"),
                                         ("half", "not a shard"),
                                         ("１/２", "ASCII digits 0-9"), ("auto", "$SLURM_ARRAY_TASK_ID is not set")])
def test_a_bad_shard_is_exit_2_naming_the_flag_and_nothing_is_created(tmp_path, monkeypatch, shard, words):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    suite = write_suite(tmp_path / "s.yaml", SUITE)
    r = run_cli("run", suite, "--shard", shard, "--no-tracking", "--out", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert f"error: --shard {shard}:" in r.stderr and words in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The suite as two shards, and shard 0 of another suite (a foreign shard)."""
    root = tmp_path_factory.mktemp("shards")
    suite = write_suite(root / "s.yaml", SUITE)
    other = write_suite(root / "other.yaml", SUITE.replace("iterations: 2", "iterations: 3"))
    dirs = {}
    for name, path, shard in (("0", suite, "0/2"), ("1", path := suite, "1/2"), ("foreign", other, "0/2")):
        r = run_cli("run", path, "--shard", shard, "--no-tracking", "--out", root / name)
        assert r.returncode == 0, r.stderr
        dirs[name] = next((root / name / "kshards").iterdir())
    return root, dirs


def test_a_shard_run_records_its_shard_and_the_whole_suite(shards):
    root, dirs = shards
    from harness.run import results

    for i in ("0", "1"):
        d = dirs[i]
        assert json.loads((d / "state.json").read_text())["shard"] == f"{i}/2"
        assert json.loads((d / "state.json").read_text())["finished"] is True
        assert json.loads((d / "env.json").read_text())["shard"] == f"{i}/2"
        assert set(results.load(d)["shard"]) == {f"{i}/2"}
        assert (d / "suite.yaml").read_text() == (dirs["0"] / "suite.yaml").read_text()  # the whole suite
    assert set(results.load(dirs["0"])["experiment"]) == {"a", "c"}  # j % 2 == 0
    assert set(results.load(dirs["1"])["experiment"]) == {"b"}
    start = json.loads((dirs["1"] / "tracking.jsonl").read_text().splitlines()[0])
    assert start["tags"]["shard"] == "1/2"  # the MLflow parent run's tag, once synced


def test_merge_writes_one_table_in_suite_order(shards, tmp_path):
    root, dirs = shards
    from harness.run import results

    r = run_cli("merge", dirs["1"], dirs["0"], "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    df = results.load(tmp_path / "m")
    assert list(dict.fromkeys(df["experiment"])) == ["a", "b", "c"]
    assert list(df["shard"]) == ["0/2", "0/2", "1/2", "0/2"] and set(df["run_id"]) == {"m"}
    text = (tmp_path / "m" / "report.md").read_text()
    assert "## Shards (2 of 2 merged)" in text
    assert "3 experiments" in text and "; merged from 2 shards" in text.split("## Details")[0]
    assert all(f"- `{e}`" in text.split("## Details")[0] for e in "abc")
    assert "<h2>Shards (2 of 2 merged)</h2>" in (tmp_path / "m" / "report.html").read_text()
    # the plots of the merged run, each kernel experiment's from whichever shard ran it (c is learn_kernel)
    assert sorted(p.name for p in (tmp_path / "m" / "plots").iterdir()) == ["a-time.png", "b-time.png"]
    assert all(p.stat().st_size > 10_000 for p in (tmp_path / "m" / "plots").iterdir())
    # a folder holding the shards is found too
    assert run_cli("merge", root / "0", root / "1", "--out", tmp_path / "m2").returncode == 0


def test_merge_names_a_missing_shard_exit_1(shards, tmp_path):
    root, dirs = shards
    r = run_cli("merge", dirs["0"], "--out", tmp_path / "m")
    assert r.returncode == 1 and "error: shard 1/2 is missing" in r.stderr
    assert (tmp_path / "m" / "results.csv").is_file()  # what is there is merged


def test_merge_names_an_unfinished_shard_exit_1(shards, tmp_path):
    root, dirs = shards
    cut = shutil.copytree(dirs["1"], tmp_path / "cut")
    state = json.loads((cut / "state.json").read_text()) | {"finished": False}
    (cut / "state.json").write_text(json.dumps(state))
    r = run_cli("merge", dirs["0"], cut, "--out", tmp_path / "m")
    assert r.returncode == 1 and f"shard 1/2 did not finish ({cut.resolve()})" in r.stderr


def test_merge_refuses_a_duplicated_shard_exit_2(shards, tmp_path):
    root, dirs = shards
    again = shutil.copytree(dirs["1"], tmp_path / "again")
    r = run_cli("merge", dirs["0"], dirs["1"], again, "--out", tmp_path / "m")
    assert r.returncode == 2 and "shard 1/2 is given twice" in r.stderr and str(again.resolve()) in r.stderr
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_foreign_shard_exit_2(shards, tmp_path):
    root, dirs = shards
    r = run_cli("merge", dirs["0"], dirs["foreign"], "--out", tmp_path / "m")
    assert r.returncode == 2 and f"merge {dirs['foreign'].resolve()}: a foreign shard" in r.stderr
    assert "resolved suite" in r.stderr and not (tmp_path / "m").exists()
    moved = shutil.copytree(dirs["1"], tmp_path / "moved")  # same suite, another commit
    env = json.loads((moved / "env.json").read_text()) | {"git_commit": "0" * 40}
    (moved / "env.json").write_text(json.dumps(env))
    r = run_cli("merge", dirs["0"], moved, "--out", tmp_path / "m")
    assert r.returncode == 2 and "a foreign shard: git commit 0000" in r.stderr


def test_resuming_a_shard_keeps_its_shard(shards, tmp_path):
    root, dirs = shards
    cut = shutil.copytree(dirs["1"], tmp_path / "cut")
    suite = root / "s.yaml"
    r = run_cli("run", suite, "--resume", cut, "--shard", "0/2", "--no-tracking")
    assert r.returncode == 2 and f"--shard 0/2: {cut} is shard 1/2" in r.stderr
    r = run_cli("run", suite, "--resume", cut, "--no-tracking")  # the recorded shard
    assert r.returncode == 0, r.stderr
    from harness.run import results

    assert list(results.load(cut)["experiment"]) == ["b"]


def test_a_results_file_from_before_the_shard_column_reads_with_it_empty(shards, tmp_path):
    import pandas as pd

    from harness.run import results

    old = pd.read_csv(shards[1]["0"] / "results.csv", dtype=str).drop(columns=["shard"])
    old.to_csv(tmp_path / "results.csv", index=False)
    df = results.load(tmp_path / "results.csv")
    assert df["shard"].isna().all() and len(df) == 3
