"""Bad input: a clear DataError naming file, row and column, and never a half-written dataset."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hamur_dist.data import prepare
from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.validation import DataError, verify_dataset

SCHEMA = {
    "name": "bad", "label": "y", "user": "uid",
    "domain": {"column": "d", "mapping": {"a": 0, "b": 1}},
    "sparse": [{"name": "uid", "encoding": "identity", "vocab_size": 100}, "cat"],
    "dense": [{"name": "x", "scaling": "minmax"}],
    "split": {"fractions": [0.6, 0.2, 0.2]},
}
HEADER = "y,d,uid,cat,x"
BAD_ROW = 37


def good_rows(n: int = 60) -> list[str]:
    return [f"{i % 2},{'a' if i % 3 else 'b'},{i},c{i % 4},{i * 0.5}" for i in range(n)]


def write_csv(path, rows, header=HEADER):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def with_bad_row(line: str) -> list[str]:
    rows = good_rows()
    rows[BAD_ROW] = line
    return rows


def no_leftovers(folder):
    return not [p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("line, column, reason", [
    (",a,5,c1,1.0", "y", "null label"),
    ("2,a,5,c1,1.0", "y", "label outside {0,1}"),
    ("1,zzz,5,c1,1.0", "d", "unknown domain"),
    ("1,,5,c1,1.0", "d", "unknown domain"),
    ("1,a,-3,c1,1.0", "uid", "negative id"),
    ("1,a,100,c1,1.0", "uid", "out-of-vocabulary id"),
    ("1,a,5,c1,inf", "x", "NaN/inf dense value"),
    ("1,a,5,c1,", "x", "null dense value"),
    ("1,a,5,c1,abc", "x", "not a valid double"),
    ("1,a,x5,c1,1.0", "uid", "not a valid int64"),
])
def test_bad_value_names_file_row_column(tmp_path, line, column, reason):
    src = write_csv(tmp_path / "in.csv", with_bad_row(line))
    with pytest.raises(DataError) as err:
        prepare("table", tmp_path / "out", schema=SCHEMA, source=str(src), chunk_rows=16, progress=False)
    e = err.value
    assert (e.file, e.row, e.column) == (str(src), BAD_ROW, column)
    assert reason in str(e) and str(src) in str(e) and f"row {BAD_ROW}" in str(e) and f"'{column}'" in str(e)
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path)


def test_truncated_csv_row_names_the_line(tmp_path):
    src = write_csv(tmp_path / "in.csv", with_bad_row("1,a,5"))
    with pytest.raises(DataError, match=f"line {BAD_ROW + 2} has 3 fields, expected 5") as err:
        prepare("table", tmp_path / "out", schema=SCHEMA, source=str(src), progress=False)
    assert err.value.row == BAD_ROW and err.value.file == str(src)
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path)


@pytest.mark.parametrize("header, column, message", [
    ("y,d,uid,cat", "x", "missing column"),
    ("y,d,uid,cat,x,z", "z", "unexpected column"),
])
def test_missing_or_extra_column(tmp_path, header, column, message):
    rows = [",".join(r.split(",")[:4] + (["1.0", "9"] if "z" in header else [])) for r in good_rows()]
    src = write_csv(tmp_path / "in.csv", rows, header)
    with pytest.raises(DataError, match=message) as err:
        prepare("table", tmp_path / "out", schema=SCHEMA, source=str(src), progress=False)
    assert err.value.column == column and err.value.file == str(src)
    assert not (tmp_path / "out").exists()


def test_parquet_wrong_type_nan_empty_and_truncated(tmp_path):
    frame = pd.DataFrame({"y": [0, 1] * 30, "d": ["a", "b", "a"] * 20, "uid": np.arange(60),
                          "cat": ["c1", "c2"] * 30, "x": np.linspace(0, 1, 60)})
    wrong = frame.assign(x=frame["x"].astype(str))
    wrong.to_parquet(tmp_path / "wrong.parquet")
    with pytest.raises(DataError, match="has type (large_)?string, expected numeric") as err:
        prepare("table", tmp_path / "o1", schema=SCHEMA, source=str(tmp_path / "wrong.parquet"), progress=False)
    assert err.value.column == "x"

    x = frame["x"].to_numpy().copy()
    x[BAD_ROW] = np.nan                   # a real float NaN in Parquet (pandas would store a null)
    table = pa.Table.from_pandas(frame, preserve_index=False).set_column(4, "x", pa.array(x))
    pq.write_table(table, tmp_path / "nan.parquet")
    with pytest.raises(DataError, match="NaN/inf dense value") as err:
        prepare("table", tmp_path / "o2", schema=SCHEMA, source=str(tmp_path / "nan.parquet"), progress=False)
    assert (err.value.row, err.value.column) == (BAD_ROW, "x")

    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty file") as err:
        prepare("table", tmp_path / "o3", schema=SCHEMA, source=str(tmp_path / "empty.parquet"), progress=False)
    assert err.value.file == str(tmp_path / "empty.parquet")

    frame.to_parquet(tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        prepare("table", tmp_path / "o4", schema=SCHEMA, source=str(tmp_path / "cut.parquet"), progress=False)
    assert err.value.file == str(tmp_path / "cut.parquet")
    assert no_leftovers(tmp_path) and not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_skip_policy_drops_and_counts(tmp_path):
    rows = good_rows()
    rows[3] = ",a,5,c1,1.0"
    rows[10] = "1,zzz,5,c1,1.0"
    rows[11] = "1,zzz,6,c1,1.0"
    rows[20] = "1,a,5,c1,inf"
    rows[30] = "1,a,5"
    src = write_csv(tmp_path / "in.csv", rows)
    m = prepare("table", tmp_path / "out", schema=SCHEMA, source=str(src), bad_rows="skip", chunk_rows=8,
                progress=False)
    assert m.skipped_rows == {"null label": 1, "unknown domain": 2, "NaN/inf dense value": 1, "malformed row": 1}
    assert sum(s.rows for s in m.splits.values()) == 55
    assert load_manifest(tmp_path / "out").skipped_rows == m.skipped_rows


def test_existing_dataset_survives_failed_and_interrupted_runs(tmp_path, monkeypatch):
    good = write_csv(tmp_path / "good.csv", good_rows())
    bad = write_csv(tmp_path / "bad.csv", with_bad_row("2,a,5,c1,1.0"))
    out = tmp_path / "out"
    before = prepare("table", out, schema=SCHEMA, source=str(good), progress=False)
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        prepare("table", out, schema=SCHEMA, source=str(good), progress=False)
    with pytest.raises(DataError, match="label outside"):
        prepare("table", out, schema=SCHEMA, source=str(bad), overwrite=True, progress=False)
    assert verify_dataset(out) == before and no_leftovers(tmp_path)

    from hamur_dist.data import writer

    def interrupted(self, table, order=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(writer.SplitWriter, "write_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare("table", out, schema=SCHEMA, source=str(good), overwrite=True, seed=7, progress=False)
    assert verify_dataset(out) == before and no_leftovers(tmp_path)
    monkeypatch.undo()
    after = prepare("table", out, schema=SCHEMA, source=str(good), overwrite=True, seed=7, progress=False)
    assert verify_dataset(out) == after and after.source["seed"] == 7 and no_leftovers(tmp_path)


def test_guessed_column_type_that_changes_later(tmp_path):
    from hamur_dist.data.sources import InputFile
    from hamur_dist.data.table import prepare_table, read_options_for
    from hamur_dist.data.table_schema import load_table_schema

    rows = [f"1,a,{i},{i},1.0" for i in range(400)] + ["1,a,5,oops,1.0"]
    src = write_csv(tmp_path / "in.csv", rows)
    schema = load_table_schema(SCHEMA)
    read = read_options_for(schema, chunk_rows=100, bad_rows="fail")
    read.block_bytes = 1024                   # the type of 'cat' is guessed from the first block: int64
    with pytest.raises(DataError, match="'oops' is not a valid int64.*set dtype: string") as err:
        prepare_table(schema, [InputFile(src)], tmp_path / "out", read=read, progress=False)
    assert (err.value.row, err.value.column) == (400, "cat")
