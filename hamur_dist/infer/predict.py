"""Batch inference with Ray Data: score a prepared dataset split on actors, write Parquet.

Each actor loads the model artifact once; ``map_batches`` streams the shards through them, and the
output (the input columns plus ``prediction``) is written to a temporary folder renamed into place.
The driver first checks, before Ray reads anything, that the artifact loads weights-only, that the
dataset is encoded like the model's training data and that the split's shards match the manifest.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import torch

from hamur_dist.data.batches import InputDataError, find_bad_row
from hamur_dist.data.manifest import load_manifest
from hamur_dist.fileio import atomic_rename
from hamur_dist.infer.evaluate import check_artifact_matches_dataset, model_dir, verified_dataset
from hamur_dist.data.ray_datasets import parquet_dataset


class Scorer:
    """A Ray Data actor: model loaded once, then Arrow batch in, Arrow batch + prediction out."""

    def __init__(self, model_path: str, data_root: str):
        from hamur_dist.model.artifact import load_artifact
        from hamur_dist.data.batches import BatchCollator

        torch.set_num_threads(1)
        self.model = load_artifact(model_path)   # predict() checked it against the dataset before scoring
        self.collate = BatchCollator(load_manifest(data_root))

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        t = self.collate(batch)
        prob = torch.sigmoid(self.model(t["sparse"], t["dense"], t["domain"])).numpy()
        return batch.append_column("prediction", pa.array(prob, pa.float32()))


def caused_by_bad_input(exc: BaseException) -> bool:
    """Whether a scoring failure was an ``InputDataError``. Ray hands the driver a ``RayTaskError``
    whose remote cause survives only as traceback text, so the text is searched too."""
    name = f"{InputDataError.__module__}.{InputDataError.__qualname__}"
    cause, seen = exc, set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, InputDataError) or name in str(cause):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def predict(model_path: str | Path, data_root: str | Path, out: str | Path, split: str = "test",
            batch_size: int = 8192, num_actors: int = 2, verify_hashes: bool = True) -> int:
    """Score ``split`` of a dataset; returns the number of rows written."""
    import ray.data

    data_root = str(Path(data_root).absolute())
    out = Path(out).absolute()
    if out.exists():
        raise FileExistsError(f"output {out} exists; choose another --out")
    model_path = model_dir(model_path)
    check_artifact_matches_dataset(model_path, load_manifest(data_root), data_root)
    manifest = verified_dataset(data_root, split, verify_hashes)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    files = manifest.shard_paths(data_root, split)
    ds = parquet_dataset(files, manifest.columns)
    scored = ds.map_batches(Scorer, fn_constructor_args=(str(model_path), data_root),
                            batch_size=batch_size, batch_format="pyarrow", concurrency=num_actors,
                            num_cpus=0.5)
    try:
        scored.write_parquet(str(tmp))
        rows = ray.data.read_parquet(str(tmp)).count()
        atomic_rename(tmp, out)
    except Exception as exc:
        bad_row = find_bad_row(files, manifest) if caused_by_bad_input(exc) else None
        if bad_row is None:
            raise
        raise bad_row from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
