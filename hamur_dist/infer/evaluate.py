"""Offline evaluation: the per-domain report of a trained model on a prepared dataset split (no Ray).

Streams the split's shards in record batches, so memory stays bounded by the batch size.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hamur_dist.data.manifest import load_manifest
from hamur_dist.model.artifact import load_artifact
from hamur_dist.metrics import PredictionBuffer, domain_report
from hamur_dist.data.batches import BatchCollator


def model_dir(path: str | Path) -> Path:
    """Accept a run directory or its model/ folder."""
    path = Path(path)
    return path / "model" if (path / "model" / "model.pt").is_file() else path


def check_model_matches_dataset(model, manifest, data_root) -> None:
    """The model's tables must match the dataset's vocabularies and domains."""
    schema = model.schema
    want = [(f.name, f.vocab_size) for f in schema.sparse]
    have = [(f.name, f.vocab_size) for f in manifest.sparse]
    if want != have or schema.num_domains != manifest.domain.num_domains:
        raise ValueError(f"dataset {data_root} does not match the model: model expects sparse {want} and "
                         f"{schema.num_domains} domains, dataset has {have} and {manifest.domain.num_domains}")


@torch.no_grad()
def evaluate_model(model_path: str | Path, data_root: str | Path, split: str = "test",
                   batch_size: int = 16384) -> dict:
    model = load_artifact(model_dir(model_path))
    manifest = load_manifest(data_root)
    check_model_matches_dataset(model, manifest, data_root)
    collate = BatchCollator(manifest, with_user=manifest.user_column is not None)
    buf = PredictionBuffer(with_user=manifest.user_column is not None)
    for path in manifest.shard_paths(data_root, split):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=manifest.columns):
            t = collate(pa.Table.from_batches([batch]))
            prob = torch.sigmoid(model(t["sparse"], t["dense"], t["domain"]))
            buf.add(prob, t["label"], t["domain"], t.get("user"))
    return domain_report(buf.tensors(), manifest.domain.num_domains, manifest.domain.names)
