"""Ray Data over a prepared dataset: the splits as streams of Arrow blocks.

One training batch travels like this: ``read_parquet`` tasks read row groups of the split's
shards (file order reshuffled every epoch) -> the trainer's data config splits the stream between
workers without dropping rows -> ``iter_torch_batches`` cuts batches and ``BatchCollator``
(``hamur_dist.data.batches``) turns each into tensors. Ray is imported only when called.
"""
from __future__ import annotations

import os
from pathlib import Path

from hamur_dist.data.batches import InputDataError
from hamur_dist.data.manifest import SPLITS, Manifest


def arrow_collate(collator):
    """``collator`` as the collate class ``iter_torch_batches`` expects for Arrow input: Ray hands it
    each batch as an Arrow table, without converting to numpy first (a plain function is deprecated)."""
    from ray.data.collate_fn import ArrowBatchCollateFn

    class ArrowCollate(ArrowBatchCollateFn):
        def __call__(self, batch):
            return collator(batch)

    return ArrowCollate()


def training_datasets(root: str | Path, manifest: Manifest, data_cfg, seed: int) -> dict:
    """The three splits as Ray Datasets. Every epoch re-executes them, so the train split gets new
    batches each epoch: a new file order and block order, or with ``global_shuffle`` a full row
    shuffle (replaying the same batches every epoch costs AUC: docs/design-notes.md)."""
    datasets = {}
    for split in SPLITS:
        train = split == "train"
        ds = split_dataset(root, manifest, split, data_cfg.shuffle_files and train, seed)
        # Blocks of a few batches: workers take blocks on demand, so small blocks keep their shares even.
        rows = 4 * (data_cfg.batch_size if train else data_cfg.eval_batch_size)
        if train and data_cfg.global_shuffle:
            # shuffle the few big read blocks, then cut them: a shuffle over small blocks is costly
            ds = ds.materialize() if data_cfg.materialize else ds
            ds = ds.random_shuffle().repartition(target_num_rows_per_block=rows)
        else:
            ds = ds.repartition(target_num_rows_per_block=rows)
            ds = ds.materialize() if data_cfg.materialize else ds   # cut once, not every epoch
            if train and data_cfg.shuffle_files:
                ds = ds.randomize_block_order()
        datasets[split] = ds
    return datasets


def split_dataset(root: str | Path, manifest: Manifest, split: str, shuffle_files: bool, seed: int,
                  columns: list[str] | None = None):
    """A Ray Dataset streaming one split's shards (file order reshuffled each execution)."""
    from ray.data import FileShuffleConfig

    files = manifest.shard_paths(root, split)
    if not files:
        raise InputDataError(f"dataset {root}: split '{split}' has no shards")
    shuffle = FileShuffleConfig(seed=seed, reseed_after_execution=True) if shuffle_files else None
    return parquet_dataset(files, columns or manifest.columns, shuffle)


def parquet_dataset(files: list[str], columns: list[str], shuffle=None):
    """``ray.data.read_parquet`` with its footer-reader pool sized to the number of files: Ray's
    default starts 32 actors per read, minutes of start-up on a small machine. A value set in the
    environment wins."""
    import ray.data

    key = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
    if key in os.environ:
        return ray.data.read_parquet(files, columns=columns, shuffle=shuffle)
    os.environ[key] = str(max(1, min(32, len(files) // 16)))
    try:
        return ray.data.read_parquet(files, columns=columns, shuffle=shuffle)
    finally:
        del os.environ[key]
