"""Reading a prepared dataset in-process with pyarrow (tests, benchmarks, evaluation).

Training streams the same shards through Ray Data instead; both read only the manifest and the shards.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.validation import DataError, shard_schema


def shard_files(root: str | Path, split: str) -> list[str]:
    """Absolute paths of the shards of ``split``, in manifest order."""
    return load_manifest(root).shard_paths(root, split)


def read_split(root: str | Path, split: str, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """One split as ``{column: numpy array}`` (all shards concatenated in manifest order)."""
    manifest = load_manifest(root)
    schema = shard_schema(manifest)
    wanted = list(columns) if columns is not None else schema.names
    for name in wanted:
        if name not in schema.names:
            raise DataError(f"no such column in dataset {root} (has {', '.join(schema.names)})", column=name)
    tables = []
    for path in manifest.shard_paths(root, split):
        try:
            tables.append(pq.read_table(path, columns=wanted))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read shard: {exc}", file=path) from None
    if not tables:
        return {name: np.empty(0, dtype=schema.field(name).type.to_pandas_dtype()) for name in wanted}
    table = pa.concat_tables(tables)
    return {name: table.column(name).to_numpy() for name in wanted}
