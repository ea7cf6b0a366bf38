"""The train split comes in new batches every epoch, also when materialized, and still exactly once."""
from __future__ import annotations

import numpy as np
import pytest

from hamur_dist.config import DataConfig
from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.ray_datasets import training_datasets


def epoch_rows(ds) -> list[tuple]:
    """One epoch's train rows in order, as (user, item, cat, domain) tuples; a row's identity."""
    out = []
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        out += list(zip(batch["user"], batch["item"], batch["cat"], batch["x"]))
    return out


@pytest.mark.parametrize("materialize, global_shuffle", [(True, False), (True, True), (False, True)])
def test_each_epoch_brings_new_batches_of_the_same_rows(ray_session, tiny_dataset, materialize, global_shuffle):
    cfg = DataConfig(path=str(tiny_dataset), batch_size=256, materialize=materialize, global_shuffle=global_shuffle)
    train = training_datasets(tiny_dataset, load_manifest(tiny_dataset), cfg, seed=0)["train"]
    first, second = epoch_rows(train), epoch_rows(train)
    assert len(first) == load_manifest(tiny_dataset).splits["train"].rows
    assert sorted(first) == sorted(second)              # the same rows, each once
    assert first != second                              # block order alone: 1 chance in 6! to repeat
    if global_shuffle:   # new batches: rows from everywhere, not a stretch of epoch 1's order
        assert len(set(first[:256]) & set(second[:256])) < 64
        position = {row: i for i, row in enumerate(first)}
        spread = np.ptp([position[r] for r in second[:256]])
        assert spread > len(first) // 2
