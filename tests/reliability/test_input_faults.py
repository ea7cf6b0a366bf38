"""Bad inputs at training time (what tests/train does not cover already): a NaN dense value stops
training with an error naming shard, row and column; a shard changed after preparation is refused
before training, naming the shard."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hamur_dist.train.outputs import RESTART_MARK
from tests.helpers import events, small_experiment
from hamur_dist.data.manifest import load_manifest
from hamur_dist.train.trainer import TrainingError, train


def replace_value(shard, column: str, row: int, value, dtype) -> None:
    table = pq.read_table(shard)
    values = table.column(column).to_numpy().copy()
    values[row] = value
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(values, dtype)), shard, row_group_size=512)


@pytest.mark.slow
def test_nan_dense_value_names_shard_row_and_column(ray_session, fault_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(fault_dataset, root)
    shard = root / load_manifest(root).splits["train"].shards[2].path
    replace_value(shard, "x", 11, np.nan, pa.float32())
    with pytest.raises(TrainingError) as err:   # restarts allowed, but bad data is not retried
        train(small_experiment(root, tmp_path / "runs", "train.epochs=1", "data.verify_hashes=false",
                               "run.max_failures=2", "run.name=nan"), log=lambda *_: None)
    msg = str(err.value)
    assert str(shard) in msg and "row 11" in msg and "'x'" in msg and "not finite" in msg, msg
    assert not list((tmp_path / "runs").glob("*/model/model.pt"))     # nothing was exported
    log = events(tmp_path / "runs" / "nan")
    assert len(log) == 1 and "not restarted" in log[0] and not any(RESTART_MARK in line for line in log), log


def test_shard_changed_after_preparation_is_refused_before_training(fault_dataset, tmp_path, capsys):
    from hamur_dist.cli import main

    root = tmp_path / "ds"
    shutil.copytree(fault_dataset, root)
    shard = root / load_manifest(root).splits["val"].shards[1].path
    item = pq.read_table(shard).column("item")[3].as_py()
    replace_value(shard, "item", 3, (item + 1) % 300, pa.int64())   # valid, same row count: only the hash knows
    assert main(["train", f"data.path={root}", f"run.storage_path={tmp_path / 'runs'}", "train.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert str(shard) in err and "does not match the manifest" in err and "changed after preparation" in err, err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())   # no run was started
