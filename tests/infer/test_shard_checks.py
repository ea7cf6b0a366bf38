"""Before scoring, the split's shards must be what the manifest says; a null in a shard not made by
prepare is an error naming file, row and column (not an id of -2**63 and an IndexError)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.validation import DataError
from hamur_dist.infer.evaluate import evaluate_model
from tests.infer.edits import rewrite_shard


def with_null(table: pa.Table, column: str, row: int) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = None
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))


def test_changed_shard_is_refused_naming_the_file(artifact, dataset, tmp_path):
    from hamur_dist.infer.predict import predict

    relative = load_manifest(dataset).splits["test"].shards[1].path
    table = pq.read_table(dataset / relative)
    items = table.column("item").to_pylist()
    items[3] = (items[3] + 1) % 300          # still a valid id: only the hash can tell
    pq.write_table(table.set_column(1, "item", pa.array(items, pa.int64())), dataset / relative)
    for score in (lambda: evaluate_model(artifact, dataset, "test"),
                  lambda: predict(artifact, dataset, tmp_path / "scored", "test")):
        with pytest.raises(DataError, match=r"sha256 .* does not match the manifest") as err:
            score()
        assert err.value.file == str(dataset / relative)
    evaluate_model(artifact, dataset, "val")                       # other splits are not read
    evaluate_model(artifact, dataset, "test", verify_hashes=False)  # the user can opt out


@pytest.mark.parametrize("column, reason", [("item", "null value"), ("domain", "null value"),
                                            ("user", "null value"), ("x", "null value"), ("label", "null value")])
def test_null_names_file_row_and_column(artifact, dataset, column, reason):
    shard = load_manifest(dataset).splits["train"].shards[1]
    row = min(150, shard.rows - 1)           # past the first batches of 64 rows: the offset counts
    path = rewrite_shard(dataset, shard.path, with_null(pq.read_table(dataset / shard.path), column, row))
    with pytest.raises(DataError, match=reason) as err:
        evaluate_model(artifact, dataset, "train", batch_size=64)
    assert (err.value.file, err.value.row, err.value.column) == (str(path), row, column)


def test_predict_names_the_null_row(ray_session, artifact, dataset, tmp_path):
    from hamur_dist.infer.predict import predict

    shard = load_manifest(dataset).splits["test"].shards[0]
    path = rewrite_shard(dataset, shard.path, with_null(pq.read_table(dataset / shard.path), "cat", 5))
    with pytest.raises(DataError, match="null value") as err:
        predict(artifact, dataset, tmp_path / "scored", "test", batch_size=64, num_actors=1)
    assert (err.value.file, err.value.row, err.value.column) == (str(path), 5, "cat")
    assert not (tmp_path / "scored").exists()
