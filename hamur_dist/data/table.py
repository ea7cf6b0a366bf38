"""The general preparer: any CSV / Parquet files + a ``TableSchema`` -> sharded Parquet + manifest.

Two streaming passes over the input, chunk by chunk:
  pass 1: check every row, count vocabularies, dense statistics, rows per split;
  pass 2: check again (same verdicts), encode, assign split and shard, write.
Bad rows (null or non-0/1 label, unknown domain, NaN/inf dense value, negative or out-of-vocabulary
id) raise ``DataError`` naming file, row and column, or are skipped and counted (``bad_rows="skip"``).
The dataset-specific preparers (MovieLens, Ali-CCP) are configurations of this one path.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from hamur_dist.config_loader import ConfigError
from hamur_dist.data.manifest import SCHEMA_KEY, SPLITS, DenseFeature, DomainInfo, Manifest, SparseFeature
from hamur_dist.data.sources import Chunk, InputFile, MalformedRows, ReadOptions, iter_chunks
from hamur_dist.data.splitting import (QuotaDraw, ShuffledSplits, assign_by_hash, assign_by_time, filter_rows,
                                       split_sizes, take_split, time_cutoffs)
from hamur_dist.data.encoders import ValueCounter, VocabularyEncoder
from hamur_dist.data.like import Parent, lineage, schema_record
from hamur_dist.data.vocabulary import (domain_fingerprint, hashed_fingerprint, identity_fingerprint,
                                        values_fingerprint, write_vocabulary)
from hamur_dist.data.table_rows import TableRows, floats
from hamur_dist.data.table_schema import TableSchema
from hamur_dist.data.validation import DataError, shard_schema
from hamur_dist.data.staged_output import StagedOutput
from hamur_dist.data.writer import SplitWriter, dictionary_columns

Transform = Callable[[Chunk], pa.Table]


def column_kinds(schema: TableSchema) -> dict[str, str]:
    """What each raw column must hold: int, numeric, string or any (CSV columns are read as such)."""
    wanted: list[tuple[str, str]] = []
    for f in schema.sparse:
        wanted.append((f.source, "multi" if f.multi_hot else "int" if f.encoding == "identity" else
                       {"int": "int", "string": "string", "auto": "any"}[f.dtype]))
    wanted += [(f.source, "numeric") for f in schema.dense]
    wanted += [(c, "numeric") for c in (schema.label.column, *schema.extra_labels)]
    d = schema.domain
    if d.mapping:
        wanted.append((d.column, "int" if isinstance(next(iter(d.mapping)), int) else "string"))
    else:
        wanted.append((d.column, "numeric" if d.bins else "int"))
    if schema.split.method == "time":
        wanted.append((schema.split.time_column, "numeric"))
    if schema.split.method == "hash":
        wanted += [(c, "any") for c in schema.split.hash_columns]
    kinds: dict[str, str] = {}
    for column, kind in wanted:
        have = kinds.get(column, "any")
        if have == "any" or have == kind or kind == "any":
            kinds[column] = kind if have == "any" else have
        elif {have, kind} == {"int", "numeric"}:
            kinds[column] = "int"
        else:
            raise ConfigError(f"column '{column}' is used as {have} and as {kind}")
    return kinds


def _progress(desc: str, total: int | None, enabled: bool | None):
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, disable=None if enabled is None else not enabled,
                dynamic_ncols=True, leave=False)


def read_options_for(schema: TableSchema, chunk_rows: int, bad_rows: str) -> ReadOptions:
    i = schema.input
    return ReadOptions(columns=column_kinds(schema), drop=tuple(schema.drop), format=i.format, delimiter=i.delimiter,
                       header=i.header, column_names=tuple(i.column_names), encoding=i.encoding,
                       chunk_rows=chunk_rows, bad_rows=bad_rows)


def prepare_table(schema: TableSchema, files: list[InputFile], out: str | Path, *,
                  read: ReadOptions | None = None, transform: Transform | None = None,
                  shard_rows: int = 1_000_000, row_group_rows: int = 65_536, chunk_rows: int = 262_144,
                  bad_rows: str = "fail", overwrite: bool = False, progress: bool | None = None,
                  source_info: dict | None = None, parent: Parent | None = None) -> Manifest:
    """Prepare ``files`` (each optionally bound to a split) as described by ``schema`` into ``out``;
    with ``parent``, encoded like that dataset (``hamur_dist.data.like``)."""
    if bad_rows not in ("fail", "skip"):
        raise ConfigError(f"bad_rows must be 'fail' or 'skip', got {bad_rows!r}")
    if shard_rows < 1 or row_group_rows < 1 or chunk_rows < 1:
        raise ConfigError("shard_rows, row_group_rows and chunk_rows must be >= 1")
    if not files:
        raise DataError("no input files")
    by_file = schema.split.method == "files"
    if by_file and any(f.split not in SPLITS for f in files):
        raise ConfigError(f"split method 'files' needs every input file bound to one of {SPLITS}")
    read = read or read_options_for(schema, chunk_rows, bad_rows)
    read.chunk_rows, read.bad_rows = chunk_rows, bad_rows
    started = time.perf_counter()
    with StagedOutput(out, overwrite) as staged:
        rows = TableRows(schema, bad_rows, parent)
        malformed = MalformedRows(bad_rows)

        def chunks(count: bool):
            """(chunk, its valid rows after the transform), for one pass over every input file."""
            for chunk in iter_chunks(files, read, malformed):
                table = transform(chunk) if transform else chunk.table
                yield chunk, filter_rows(table, rows.valid_rows(chunk, table, count))

        sizes, assign = _first_pass(chunks(count=True), rows, schema, progress)
        skipped = {**rows.skipped, **({"malformed row": malformed.count} if malformed.count else {})}
        manifest = _manifest(rows.schema, rows, source_info)
        writers = {s: SplitWriter(staged.path, s, shard_schema(manifest), shard_rows, row_group_rows,
                                  manifest.domain.num_domains, "domain", "label",
                                  dictionary=dictionary_columns(manifest)) for s in SPLITS}
        shuffled = (ShuffledSplits(staged.path / "_shuffle", dict(zip(SPLITS, sizes)), shard_rows,
                                   schema.split.seed) if schema.split.shuffle else None)
        add = shuffled.add if shuffled is not None else (lambda split, part: writers[split].append(part))
        written = 0
        with _progress("pass 2/2: encode + write", sum(sizes), progress) as bar:
            for chunk, table in chunks(count=False):
                encoded = pa.table(rows.encode(table))
                labels = assign(chunk, table)
                for index, split in enumerate(SPLITS):
                    add(split, take_split(encoded, labels, index))
                written += encoded.num_rows
                bar.update(encoded.num_rows)
        if written != sum(sizes):
            raise DataError(f"pass 2 read {written} valid rows, pass 1 read {sum(sizes)}: did the input change?",
                            file=files[0].path)
        if shuffled is not None:
            with _progress("shuffle + write shards", written, progress) as bar:
                shuffled.finish(writers, bar)
        manifest.splits = {s: w.close() for s, w in writers.items()}
        manifest.skipped_rows = skipped
        manifest.unknown_ids = rows.unknown_ids
        if rows.truncated_lists:     # lists longer than max_len (the spec's or the parent's): cut
            manifest.source["truncated_lists"] = rows.truncated_lists
        _write_vocabularies(staged.path, rows, manifest)
        if parent is not None:
            manifest.lineage = lineage(parent, manifest)
        manifest.source["seconds"] = round(time.perf_counter() - started, 3)
        staged.commit(manifest)
    return manifest


def _first_pass(chunks, rows: TableRows, schema: TableSchema, progress):
    """Check and count every row; return the split sizes and the function that assigns rows to splits."""
    per_split = dict.fromkeys(SPLITS, 0)
    times = ValueCounter() if schema.split.method == "time" else None
    sp = schema.split
    by_hash = (lambda table: assign_by_hash(table, sp.hash_columns, sp.fractions, sp.seed)) if sp.method == "hash" else None
    hashed = np.zeros(len(SPLITS), dtype=np.int64)
    first_file = None
    with _progress("pass 1/2: check + count", None, progress) as bar:
        for chunk, table in chunks:
            first_file = first_file or chunk.file
            rows.observe(table, chunk)
            per_split[chunk.split or "train"] += table.num_rows
            if times is not None:
                times.add(pc.cast(table.column(schema.split.time_column), pa.float64()))
            if by_hash is not None:
                hashed += np.bincount(by_hash(table), minlength=len(SPLITS))
            bar.update(chunk.table.num_rows)
    rows.finish()
    if sum(per_split.values()) == 0:
        raise DataError("no valid rows in the input", file=first_file)
    if schema.split.method == "files":
        return [per_split[s] for s in SPLITS], lambda chunk, table: np.full(table.num_rows, SPLITS.index(chunk.split))
    if by_hash is not None:
        return [int(n) for n in hashed], lambda chunk, table: by_hash(table)
    if times is not None:
        cutoffs, sizes = time_cutoffs(times.result(), schema.split.fractions)
        column = schema.split.time_column
        return sizes, lambda chunk, table: assign_by_time(floats(table.column(column)), cutoffs)
    sizes = split_sizes(sum(per_split.values()), schema.split.fractions)
    draw = QuotaDraw(sizes, np.random.default_rng([schema.split.seed, 1]))
    return sizes, lambda chunk, table: draw(table.num_rows)


def _manifest(schema: TableSchema, rows: TableRows, source_info: dict | None) -> Manifest:
    d = schema.domain
    sparse = [SparseFeature(name=f.name, vocab_size=int(rows.sparse[f.name].vocab_size),
                            hashed=rows.sparse[f.name].hashed, source=f.column if f.column != f.name else None,
                            fingerprint=_fingerprint(rows.sparse[f.name]), multi_hot=f.multi_hot,
                            max_len=rows.max_len.get(f.name, 1))
              for f in schema.sparse]
    if d.sparse_feature:
        sparse.append(SparseFeature(name=d.sparse_feature, vocab_size=d.count + 1, source=d.column,
                                    fingerprint=domain_fingerprint(d.count, d.mapping, d.bins)))
    dense = [DenseFeature(name=f.name, scaling=f.scaling, params=rows.dense[f.name].params) for f in schema.dense]
    names = list(d.names) or [f"domain{i}" for i in range(d.count)]
    info = {"preparer": "table", "split": schema.split.method, "seed": schema.split.seed,
            "shuffle": schema.split.shuffle, **(source_info or {}), SCHEMA_KEY: schema_record(schema)}
    return Manifest(name=schema.name, sparse=sparse, dense=dense,
                    domain=DomainInfo(column="domain", num_domains=d.count, names=names),
                    label="label", splits={}, extra_labels=list(schema.extra_labels),
                    user_column=schema.user, source=info)


def _fingerprint(encoder) -> str:
    if isinstance(encoder, VocabularyEncoder):
        return values_fingerprint(encoder.values)
    if encoder.hashed:
        return hashed_fingerprint(encoder.vocab_size)
    return identity_fingerprint(encoder.vocab_size)


def _write_vocabularies(root: Path, rows: TableRows, manifest: Manifest) -> None:
    """vocab/<feature>.parquet: raw value -> id (and count), so new raw data can be encoded the same way."""
    files = {name: write_vocabulary(root, name, encoder.values, encoder.counts.column("count"))
             for name, encoder in rows.sparse.items() if isinstance(encoder, VocabularyEncoder)}
    if files:
        manifest.source["vocab_files"] = files
