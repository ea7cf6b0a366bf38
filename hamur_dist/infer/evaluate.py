"""Offline evaluation: the per-domain report of a trained model on a prepared dataset split (no Ray).

Streams the split's shards in record batches, so memory stays bounded by the batch size. Before
scoring, the shards are checked against the manifest (sha256) and the dataset's manifest against
the one the model was trained on: the model reads ids and scaled values, which only mean what they
meant in training if the dataset was encoded the same way.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hamur_dist.data.batches import BatchCollator, InputDataError, bad_row_error
from hamur_dist.data.manifest import MANIFEST_NAME, Manifest, load_manifest
from hamur_dist.data.validation import DataError, verify_dataset
from hamur_dist.infer.dataset_match import input_encoding_difference
from hamur_dist.model.artifact import load_artifact, load_training_manifest, model_dir, read_payload
from hamur_dist.metrics import PredictionBuffer, domain_report


def verified_dataset(data_root: str | Path, split: str, verify_hashes: bool = True) -> Manifest:
    """The dataset's manifest, once ``split``'s shards are what it describes (a changed shard is
    refused naming the file)."""
    return verify_dataset(data_root, splits=[split], check_hashes=verify_hashes)


def check_dataset_encoding(trained: Manifest | None, manifest: Manifest, data_root, model_path) -> None:
    """Refuse a dataset whose ids or dense values are not encoded as in the model's training data
    (``trained``: the artifact's manifest.json)."""
    where = Path(data_root) / MANIFEST_NAME
    if trained is None:
        raise DataError(f"the model {model_path} has no {MANIFEST_NAME} (its training data's manifest), so "
                        f"this dataset's vocabularies cannot be checked against it", file=where)
    found = input_encoding_difference(trained, manifest)
    if found is not None:
        column, how = found
        raise DataError(f"does not match the data the model {model_path} was trained on: {how}",
                        file=where, column=column)


def check_artifact_matches_dataset(model_path: Path, manifest: Manifest, data_root) -> None:
    """A model file that loads safely, trained on data encoded like this dataset (the training manifest
    records the table sizes and domains the model was built with, so those are compared too). Without
    building the model: ``model.pt`` is opened weights-only and memory-mapped (cheap on a driver)."""
    read_payload(model_path, mmap=True)
    check_dataset_encoding(load_training_manifest(model_path), manifest, data_root, model_path)


def split_batches(manifest: Manifest, data_root, split: str, batch_size: int, with_user: bool):
    """The split's batches as the model's tensors, streamed shard by shard; a bad value is raised
    naming its file and row."""
    collate = BatchCollator(manifest, with_user=with_user)
    for path in manifest.shard_paths(data_root, split):
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=manifest.columns):
            try:
                yield collate(pa.Table.from_batches([batch]))
            except InputDataError as exc:
                raise bad_row_error(batch, manifest, path, offset, exc) from None
            offset += batch.num_rows


@torch.no_grad()
def evaluate_model(model_path: str | Path, data_root: str | Path, split: str = "test",
                   batch_size: int = 16384, verify_hashes: bool = True) -> dict:
    model_path = model_dir(model_path)
    check_artifact_matches_dataset(model_path, load_manifest(data_root), data_root)   # cheap checks first
    manifest = verified_dataset(data_root, split, verify_hashes)
    model = load_artifact(model_path)
    with_user = manifest.user_column is not None
    buf = PredictionBuffer(with_user=with_user)
    for t in split_batches(manifest, data_root, split, batch_size, with_user):
        prob = torch.sigmoid(model(t["sparse"], t["dense"], t["domain"]))
        buf.add(prob, t["label"], t["domain"], t.get("user"))
    return domain_report(buf.tensors(), manifest.domain.num_domains, manifest.domain.names)


@torch.no_grad()
def evaluate_previous(model_path: str | Path, data_root: str | Path, split: str = "test",
                      batch_size: int = 16384) -> dict:
    """A model's report on a dataset that continues (and may grow) its training data's encoding
    (``hamur_dist.data.continuation``): ids it has no row for read as unknown (0), rows of domains it
    does not know are left out. Puts a warm-started run next to the model it started from."""
    model = load_artifact(model_dir(model_path))
    old, manifest = model.training_manifest, load_manifest(data_root)
    sizes = {f.name: f.vocab_size for f in old.sparse}
    # one limit per batch column (a multi_hot feature takes max_len of them; its -1 pads stay as they are)
    limits = torch.tensor([sizes[f.name] for f in manifest.sparse for _ in range(f.width)])
    with_user = manifest.user_column is not None
    buf = PredictionBuffer(with_user=with_user)
    for t in split_batches(manifest, data_root, split, batch_size, with_user):
        known = t["domain"] < old.domain.num_domains
        if not bool(known.any()):
            continue
        sparse = torch.where(t["sparse"] < limits, t["sparse"], 0)[known]
        prob = torch.sigmoid(model(sparse, t["dense"][known], t["domain"][known]))
        buf.add(prob, t["label"][known], t["domain"][known], t["user"][known] if with_user else None)
    return domain_report(buf.tensors(), old.domain.num_domains, old.domain.names)
