"""Writing a dataset's splits: Parquet shards with streaming-sized row groups (``SplitWriter``).

The folder they are written into is a ``StagedOutput`` (``hamur_dist.data.staged_output``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hamur_dist.data.manifest import Manifest, ShardInfo, SplitInfo
from hamur_dist.fileio import sha256_file

PARQUET_COMPRESSION = "snappy"
DICTIONARY_MAX_VOCAB = 1 << 16      # dictionary-encode only low-cardinality columns (fast writes)


def dictionary_columns(manifest: Manifest) -> list[str]:
    """Columns worth Parquet dictionary encoding: small vocabularies, the domain and the labels (a list
    column is named by the path of its values)."""
    small = [f"{f.name}.list.element" if f.multi_hot else f.name
             for f in manifest.sparse if f.vocab_size <= DICTIONARY_MAX_VOCAB]
    return small + [manifest.domain.column, manifest.label, *manifest.extra_labels]


class SplitWriter:
    """Writes one split as ``split/part-NNNNN.parquet`` and keeps the counts the manifest needs.

    ``append`` streams rows and starts a new shard every ``shard_rows`` rows; ``write_shard`` writes
    a whole table as one shard. Row groups hold ``row_group_rows`` rows (the last one fewer).
    """

    def __init__(self, root: Path, split: str, schema: pa.Schema, shard_rows: int, row_group_rows: int,
                 num_domains: int, domain_column: str, label_column: str, first_shard: int = 0,
                 dictionary: list[str] | bool = True):
        self.root, self.split, self.schema = Path(root), split, schema
        self.shard_rows, self.row_group_rows = shard_rows, row_group_rows
        self.num_domains, self.domain_column, self.label_column = num_domains, domain_column, label_column
        (self.root / split).mkdir(parents=True, exist_ok=True)
        self.shards: list[ShardInfo] = []
        self.first_shard = first_shard          # file numbering starts here (parallel writers of one split)
        self.dictionary = dictionary
        self.rows_per_domain = np.zeros(num_domains, dtype=np.int64)
        self.positives_per_domain = np.zeros(num_domains, dtype=np.int64)
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []      # rows waiting to fill a row group
        self._pending_rows = 0
        self._shard_rows_written = 0
        self._shard_domains = np.zeros(num_domains, dtype=np.int64)

    # --- public ----------------------------------------------------------------------------
    def append(self, table: pa.Table) -> None:
        start = 0
        while start < table.num_rows:
            if self._writer is None:
                self._open()
            room = self.shard_rows - self._shard_rows_written - self._pending_rows
            piece = table.slice(start, min(room, table.num_rows - start))
            start += piece.num_rows
            self._pending.append(piece)
            self._pending_rows += piece.num_rows
            self._flush(final=False)
            if self._shard_rows_written + self._pending_rows >= self.shard_rows:
                self._close_shard()

    def write_shard(self, table: pa.Table, order: np.ndarray | None = None) -> None:
        """Write ``table`` (rows taken in ``order`` if given) as one shard, one row group at a time."""
        if self._writer is not None:
            self._close_shard()
        if table.num_rows == 0:
            return
        self._open()
        for start in range(0, table.num_rows, self.row_group_rows):
            if order is None:
                self._write_row_group(table.slice(start, self.row_group_rows))
            else:
                self._write_row_group(table.take(pa.array(order[start:start + self.row_group_rows])))
        self._close_shard()

    def close(self) -> SplitInfo:
        if self._writer is not None:
            self._close_shard()
        return SplitInfo(rows=int(self.rows_per_domain.sum()), rows_per_domain=self.rows_per_domain.tolist(),
                         positives_per_domain=self.positives_per_domain.tolist(), shards=self.shards)

    # --- internals ---------------------------------------------------------------------------
    def _open(self) -> None:
        self._path = self.root / self.split / f"part-{self.first_shard + len(self.shards):05d}.parquet"
        self._writer = pq.ParquetWriter(self._path, self.schema, compression=PARQUET_COMPRESSION,
                                       use_dictionary=self.dictionary)
        self._shard_rows_written = 0
        self._shard_domains[:] = 0

    def _flush(self, final: bool) -> None:
        if not self._pending_rows or (self._pending_rows < self.row_group_rows and not final):
            return
        table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        full = table.num_rows if final else table.num_rows - table.num_rows % self.row_group_rows
        for start in range(0, full, self.row_group_rows):
            self._write_row_group(table.slice(start, min(self.row_group_rows, full - start)))
        rest = table.slice(full)
        self._pending, self._pending_rows = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    def _write_row_group(self, table: pa.Table) -> None:
        table = table.select(self.schema.names).cast(self.schema)
        self._writer.write_table(table, row_group_size=table.num_rows)
        domains = table.column(self.domain_column).to_numpy()
        labels = table.column(self.label_column).to_numpy()
        counts = np.bincount(domains, minlength=self.num_domains)
        self._shard_domains += counts
        self.rows_per_domain += counts
        self.positives_per_domain += np.bincount(domains, weights=labels, minlength=self.num_domains).astype(np.int64)
        self._shard_rows_written += table.num_rows

    def _close_shard(self) -> None:
        self._flush(final=True)
        self._writer.close()
        self._writer = None
        rel = self._path.relative_to(self.root).as_posix()
        self.shards.append(ShardInfo(path=rel, rows=self._shard_rows_written, sha256=sha256_file(self._path),
                                     rows_per_domain=self._shard_domains.tolist()))
