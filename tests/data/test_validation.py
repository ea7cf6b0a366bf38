"""A manifest that no longer matches its shards, and batches that break the column contract."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hamur_dist.data import prepare
from hamur_dist.data.batches import BatchCollator, InputDataError
from hamur_dist.data.manifest import ManifestError, ShardInfo, load_manifest
from hamur_dist.data.reader import read_split, shard_files
from hamur_dist.data.validation import DataError, validate_batch, verify_dataset
from hamur_dist.fileio import sha256_file


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("valid") / "syn"
    prepare("synthetic", out, rows=3000, shard_rows=1000, row_group_rows=400, workers=1,
            vocab_sizes=[50, 1000], num_dense=2, progress=False)
    return out


@pytest.fixture
def copy(small_dataset, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(small_dataset, target)
    return target


def _rewrite(path, table):
    """Replace a shard and record its new hash, so only the intended difference remains."""
    pq.write_table(table, path)
    root = path.parent.parent
    manifest = json.loads((root / "manifest.json").read_text())
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            if root / shard["path"] == path:
                shard["sha256"] = sha256_file(path)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_intact_dataset_verifies_and_reads(small_dataset):
    m = verify_dataset(small_dataset)
    data = read_split(small_dataset, "train", columns=["f00", "label"])
    assert set(data) == {"f00", "label"} and len(data["label"]) == m.splits["train"].rows == 2400
    assert len(shard_files(small_dataset, "train")) == 3


def test_changed_bytes_fail_the_hash_check(copy):
    path = copy / "train" / "part-00001.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256 .* does not match") as err:
        verify_dataset(copy)
    assert err.value.file == str(path)
    verify_dataset(copy, splits=["val", "test"])          # other splits are fine
    verify_dataset(copy, check_hashes=False)             # footer and counts still agree


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.unlink(), "does not exist"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(p.read_bytes()[:-200]), "truncated or corrupt"),
])
def test_missing_empty_truncated_shard(copy, damage, message):
    path = copy / "val" / "part-00000.parquet"
    damage(path)
    with pytest.raises(DataError, match=message) as err:
        verify_dataset(copy)
    assert err.value.file == str(path)


def test_row_count_and_columns_must_match(copy):
    path = copy / "test" / "part-00000.parquet"
    table = pq.read_table(path)
    _rewrite(path, table.slice(0, 10))
    with pytest.raises(DataError, match="has 10 rows, the manifest says 300"):
        verify_dataset(copy)
    _rewrite(path, table.drop_columns(["d1"]))
    with pytest.raises(DataError, match="missing column") as err:
        verify_dataset(copy)
    assert err.value.column == "d1"
    _rewrite(path, table.append_column("extra", pa.array(np.zeros(table.num_rows))))
    with pytest.raises(DataError, match="unexpected column") as err:
        verify_dataset(copy)
    assert err.value.column == "extra"
    _rewrite(path, table.set_column(0, "f00", table.column("f00").cast(pa.int32())))
    with pytest.raises(DataError, match="type int32, the manifest contract says int64") as err:
        verify_dataset(copy)
    assert err.value.column == "f00"


def test_malformed_manifest(copy):
    (copy / "manifest.json").write_text('{"name": "x"}')
    with pytest.raises(ManifestError, match="malformed manifest"):
        verify_dataset(copy)


def test_validate_batch_names_row_and_column(small_dataset):
    m = verify_dataset(small_dataset)
    batch = read_split(small_dataset, "val")
    validate_batch(batch, m, file="val", row_offset=0)
    validate_batch(pa.table(batch), m)
    cases = [("f01", 1000, "out of vocabulary"), ("f00", -1, "negative id"), ("d0", np.inf, "not finite"),
             ("domain", 3, "unknown domain"), ("label", 0.5, "not 0 or 1")]
    for column, value, message in cases:
        broken = {k: v.copy() for k, v in batch.items()}
        broken[column][17] = value
        with pytest.raises(DataError, match=message) as err:
            validate_batch(broken, m, file="val/part-00000.parquet", row_offset=1000)
        assert (err.value.file, err.value.row, err.value.column) == ("val/part-00000.parquet", 1017, column)
    with pytest.raises(DataError, match="null value") as err:
        validate_batch(pa.table(batch).set_column(0, "f00", pa.array([None] * 3 + [1] * 297, pa.int64())), m)
    assert (err.value.row, err.value.column) == (0, "f00")
    with pytest.raises(DataError, match="missing column"):
        validate_batch({k: v for k, v in batch.items() if k != "label"}, m)


def test_the_batch_collator_runs_the_same_checks_naming_the_column(small_dataset):
    from hamur_dist.data.batches import BatchCollator, InputDataError

    m = verify_dataset(small_dataset)
    batch = read_split(small_dataset, "val")
    collate = BatchCollator(m)
    assert collate(pa.table(batch))["sparse"].shape == (len(batch["label"]), len(m.sparse))
    cases = [("f01", 1000, "id 1000 is out of vocabulary"), ("f00", -1, "negative id -1"),
             ("d0", np.inf, "dense value inf is not finite"), ("domain", 3, "unknown domain 3"),
             ("label", 0.5, "label 0.5 is not 0 or 1")]
    for column, value, message in cases:
        broken = {k: v.copy() for k, v in batch.items()}
        broken[column][17] = value
        with pytest.raises(InputDataError, match=f"column '{column}': {message}"):
            collate(broken)


def test_collator_refuses_nulls_naming_the_column(small_dataset):
    m = verify_dataset(small_dataset)
    table = pa.table(read_split(small_dataset, "val"))
    collate = BatchCollator(m, with_user=True)
    assert collate(table)["sparse"].shape == (300, 3)
    for column in ("f01", "domain", "d0", "label"):
        values = table.column(column).to_pylist()
        values[17] = None
        index = table.schema.get_field_index(column)
        broken = table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
        with pytest.raises(InputDataError, match=f"column '{column}': null value"):
            collate(broken)
    # Ray Data hands numpy: a null id arrives as NaN in a float column, or as None in an object column
    as_numpy = {name: table.column(name).to_numpy() for name in table.column_names}
    for null_id in (np.where(np.arange(300) == 17, np.nan, 1.0), np.array([1] * 17 + [None] + [1] * 282, dtype=object)):
        with pytest.raises(InputDataError, match="column 'f00': null value"):
            collate({**as_numpy, "f00": null_id})


@pytest.mark.parametrize("shard_path", ["../outside.parquet", "train/../../outside.parquet", "/etc/passwd",
                                        r"C:\data\x.parquet", r"\\server\share\x.parquet", ""])
def test_shard_paths_must_stay_inside_the_dataset(copy, shard_path):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["val"]["shards"][0]["path"] = shard_path
    (copy / "manifest.json").write_text(json.dumps(manifest))
    for load in (load_manifest, verify_dataset, lambda root: read_split(root, "train")):
        with pytest.raises(ManifestError) as err:
            load(copy)
        assert f"'{shard_path}'" in str(err.value) and str(copy / "manifest.json") in str(err.value)


def test_manifest_built_in_code_refuses_outside_shard_paths(small_dataset):
    m = load_manifest(small_dataset)
    assert m.shard_paths(small_dataset, "val") == [str(small_dataset / "val" / "part-00000.parquet")]
    m.splits["val"].shards.append(ShardInfo(path="val/../../elsewhere.parquet", rows=1, sha256="0" * 64))
    with pytest.raises(ManifestError, match="'val/../../elsewhere.parquet' points outside the dataset root"):
        m.shard_paths(small_dataset, "val")
