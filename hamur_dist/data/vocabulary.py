"""Vocabulary files and fingerprints: how raw values become ids, kept so new data is encoded alike.

A dataset's ``vocab/<feature>.parquet`` lists, for a vocabulary-encoded feature, every raw value
with its id (1..n, id 0 = unknown) and how often it was seen. Every sparse feature also gets a
fingerprint in the manifest: the sha256 of its mapping (the values in id order, or the hashing or
identity rule), so two datasets or a model and a dataset can be compared by what their ids mean,
not by table sizes (two vocabularies of one size can map different values to the same ids).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hamur_dist.data.validation import DataError

VOCAB_DIR = "vocab"
HASH_RULE = "pandas.util.hash_array % (buckets - 1) + 1"


def vocab_path(root: str | Path, feature: str) -> Path:
    return Path(root) / VOCAB_DIR / f"{feature}.parquet"


def values_fingerprint(values: pa.Array) -> str:
    """sha256 of a vocabulary: its value type and its values in id order."""
    digest = hashlib.sha256()
    if pa.types.is_integer(values.type):
        digest.update(b"int64\n")
        digest.update(np.ascontiguousarray(values.to_numpy(zero_copy_only=False).astype("<i8")).tobytes())
    else:
        digest.update(b"string\n")
        for value in pc.cast(values, pa.string()).to_pylist():
            encoded = value.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little") + encoded)   # length-prefixed: no separator clash
    return digest.hexdigest()


def rule_fingerprint(rule: dict) -> str:
    """sha256 of a mapping given by a rule (hashing, identity ids, the domain mapping)."""
    return hashlib.sha256(json.dumps(rule, sort_keys=True).encode()).hexdigest()


def hashed_fingerprint(buckets: int) -> str:
    return rule_fingerprint({"encoding": "hash", "rule": HASH_RULE, "buckets": buckets})


def identity_fingerprint(vocab_size: int) -> str:
    return rule_fingerprint({"encoding": "identity", "vocab_size": vocab_size})


def domain_fingerprint(num_domains: int, mapping: dict | None = None, bins: list | None = None) -> str:
    """The domain indicator's fingerprint: how raw domain values become ids (0..num_domains-1 as given
    when there is neither a mapping nor bins)."""
    pairs = sorted([k, v] for k, v in (mapping or {}).items())
    return rule_fingerprint({"encoding": "domain", "mapping": pairs, "bins": list(bins or []),
                             "num_domains": num_domains})


def write_vocabulary(root: Path, feature: str, values: pa.Array, counts: pa.Array) -> str:
    """Write ``vocab/<feature>.parquet`` (value, id, count); returns its path relative to ``root``."""
    (root / VOCAB_DIR).mkdir(exist_ok=True)
    table = pa.table({"value": values, "id": pa.array(np.arange(1, len(values) + 1, dtype=np.int64)),
                      "count": pc.cast(counts, pa.int64())})
    pq.write_table(table, vocab_path(root, feature))
    return f"{VOCAB_DIR}/{feature}.parquet"


def read_vocabulary(root: str | Path, feature: str, expected_fingerprint: str | None = None) -> pa.Table:
    """Columns value (in id order) and count of ``vocab/<feature>.parquet``, checked: ids 1..n in order
    and, when given, the fingerprint the manifest records."""
    path = vocab_path(root, feature)
    if not path.is_file():
        raise DataError(f"vocabulary of sparse feature '{feature}' not found (a dataset made by "
                        "`hamur prepare` keeps one per vocabulary-encoded feature)", file=path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", file=path) from None
    missing = [c for c in ("value", "id", "count") if c not in table.column_names]
    if missing:
        raise DataError(f"vocabulary file lacks column(s) {missing}", file=path)
    ids = table.column("id").to_numpy()
    if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
        raise DataError("vocabulary ids are not 1..n in order", file=path, column="id")
    values = table.column("value").combine_chunks()
    if values.null_count or len(pc.unique(values)) != len(values):
        raise DataError("vocabulary values must be unique and not null", file=path, column="value")
    if expected_fingerprint is not None and values_fingerprint(values) != expected_fingerprint:
        raise DataError("vocabulary does not match the fingerprint its manifest records (file changed?)",
                        file=path)
    return pa.table({"value": values, "count": table.column("count").combine_chunks()})
