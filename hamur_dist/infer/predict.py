"""Batch inference with Ray Data: score a prepared dataset split on actors, write Parquet.

Each actor loads the model artifact once; ``map_batches`` streams the shards through them, and the
output (the input columns plus ``prediction``) is written to a temporary folder renamed into place.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import torch

from hamur_dist.data.manifest import load_manifest
from hamur_dist.fileio import atomic_rename
from hamur_dist.infer.evaluate import check_model_matches_dataset, model_dir
from hamur_dist.data.ray_datasets import parquet_dataset


class Scorer:
    """A Ray Data actor: model loaded once, then Arrow batch in, Arrow batch + prediction out."""

    def __init__(self, model_path: str, data_root: str):
        from hamur_dist.model.artifact import load_artifact
        from hamur_dist.data.batches import BatchCollator

        torch.set_num_threads(1)
        self.model = load_artifact(model_path)
        manifest = load_manifest(data_root)
        check_model_matches_dataset(self.model, manifest, data_root)
        self.collate = BatchCollator(manifest)

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        t = self.collate(batch)
        prob = torch.sigmoid(self.model(t["sparse"], t["dense"], t["domain"])).numpy()
        return batch.append_column("prediction", pa.array(prob, pa.float32()))


def predict(model_path: str | Path, data_root: str | Path, out: str | Path, split: str = "test",
            batch_size: int = 8192, num_actors: int = 2) -> int:
    """Score ``split`` of a dataset; returns the number of rows written."""
    import ray.data

    data_root = str(Path(data_root).absolute())
    manifest = load_manifest(data_root)
    out = Path(out).absolute()
    if out.exists():
        raise FileExistsError(f"output {out} exists; choose another --out")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    ds = parquet_dataset(manifest.shard_paths(data_root, split), manifest.columns)
    scored = ds.map_batches(Scorer, fn_constructor_args=(str(model_dir(model_path)), data_root),
                            batch_size=batch_size, batch_format="pyarrow", concurrency=num_actors,
                            num_cpus=0.5)
    try:
        scored.write_parquet(str(tmp))
        rows = ray.data.read_parquet(str(tmp)).count()
        atomic_rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
