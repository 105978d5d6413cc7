"""The results table: fixed columns and dtypes, lossless CSV/Parquet round trip, refusal of other
schema versions, atomic writes."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.run import results
from harness.core.errors import UserError

ROW = {"suite": "s", "run_id": "20260101T000000Z-abc123", "experiment": "c[seed=1]", "kind": "kernel",
       "family": "corr2d", "variant": "native", "size": "in=6x8 k=1x2", "config": '{"input": [6, 8]}',
       "seed": 1, "device": "cpu", "device_name": "Xeon", "dtype": "float32", "threads": 2,
       "determinism": "strict", "status": "ok", "time_median_s": 1.5e-5, "time_iqr_s": 2e-7,
       "n_measurements": 20, "max_abs_err": 1e-7, "tolerance": 1e-4, "flops": 84.0, "gflops": 0.0056,
       "speedup": 20.5, "baseline": "loop", "code_hash": "0123456789abcdef", "git_commit": "abc",
       "git_dirty": True, "started_at": "2026-01-01T00:00:00+00:00", "wall_s": 0.3, "mlflow_run_id": "r1"}
CAPPED = {**ROW, "variant": "loop", "status": "capped", "error": "not run: ...", "time_median_s": None,
          "time_iqr_s": None, "n_measurements": None, "max_abs_err": None, "gflops": None, "speedup": None,
          "git_dirty": None}


@pytest.mark.parametrize("name", ["results.csv", "results.parquet"])
def test_round_trip_keeps_columns_dtypes_and_values(tmp_path, name):
    written = results.save([ROW, CAPPED], tmp_path)
    loaded = results.load(tmp_path / name)
    assert list(loaded.columns) == list(results.COLUMNS)
    assert {c: str(t) for c, t in loaded.dtypes.items()} == {c: d for c, (d, _) in results.COLUMNS.items()}
    pd.testing.assert_frame_equal(loaded, written, check_exact=False, rtol=1e-12)
    assert loaded.loc[0, "schema_version"] == results.SCHEMA_VERSION
    assert pd.isna(loaded.loc[1, "time_median_s"]) and pd.isna(loaded.loc[1, "n_measurements"])
    assert pd.isna(loaded.loc[1, "git_dirty"]) and loaded.loc[0, "git_dirty"]


def test_a_run_directory_loads_its_parquet(tmp_path):
    results.save([ROW], tmp_path)
    assert results.load(tmp_path).loc[0, "speedup"] == 20.5


def test_other_schema_versions_are_refused_with_an_instruction(tmp_path):
    df = results.to_frame([ROW])
    df["schema_version"] = 0
    df.to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(UserError, match=r"results schema_version 0, this harness reads 1; re-run the suite"):
        results.load(tmp_path / "results.csv")


def test_a_foreign_file_is_refused(tmp_path):
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(UserError, match="schema_version none"):
        results.load(tmp_path / "x.csv")


def test_rows_with_unknown_columns_are_a_bug():
    with pytest.raises(ValueError, match="not in the schema: \\['bogus'\\]"):
        results.to_frame([{**ROW, "bogus": 1}])


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.md"
    results.atomic_write_text(target, "old")

    def fail(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        results.atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temp file left behind


def test_every_column_is_documented_with_a_dtype():
    assert all(doc and dtype for dtype, doc in results.COLUMNS.values())
    assert not math.isnan(results.SCHEMA_VERSION)
