"""One chunk of a raw table, row by row: which rows break the schema, and their encoded columns.

``TableRows`` holds the encoders of a ``TableSchema``: pass 1 of ``prepare_table`` checks and
observes every chunk (vocabularies, dense statistics), pass 2 checks again and encodes. Given a
parent dataset (``--like``), the encoders start from the parent's vocabularies and statistics, and
with ``add_domains`` pass 1 collects the domain values the mapping lacks, which get new ids.
A multi_hot feature's cells become lists (``hamur_dist.data.multi_hot``): its encoder sees the
flattened values, and each row keeps at most max_len of them (the spec's, the parent's, or the
longest list pass 1 saw).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hamur_dist.data.encoders import DenseScaler, HashEncoder, IdentityEncoder, ValueCounter, VocabularyEncoder
from hamur_dist.data.like import Parent, grown_domains
from hamur_dist.data.multi_hot import ListValueError, as_lists, longest, rows_of, truncate, with_values
from hamur_dist.data.sources import Chunk
from hamur_dist.data.table_schema import TableSchema
from hamur_dist.data.validation import DataError


class TableRows:
    """Checks and encodes one chunk according to the schema."""

    def __init__(self, schema: TableSchema, bad_rows: str, parent: Parent | None = None):
        self.schema, self.bad_rows = schema, bad_rows
        self.sparse = {f.name: _encoder(f, parent) for f in schema.sparse}
        # multi_hot: ids kept per row (0 until pass 1 has seen the longest list), lists cut in pass 2
        self.max_len = {f.name: parent.feature(f.name).max_len if parent else f.max_len
                        for f in schema.sparse if f.multi_hot}
        self._longest = dict.fromkeys(self.max_len, 0)
        self.truncated = dict.fromkeys(self.max_len, 0)
        self.dense = {f.name: DenseScaler(f.scaling, parent.dense(f.name).params if parent else None)
                      for f in schema.dense}
        self.new_domains = ValueCounter() if parent is not None and parent.add_domains else None
        self._map_domains()
        self.skipped: dict[str, int] = {}

    def _map_domains(self) -> None:
        d = self.schema.domain
        if d.mapping:
            keys = list(d.mapping)
            self.domain_keys = pa.array(keys, pa.int64() if isinstance(keys[0], int) else pa.string())
            self.domain_ids = np.array([d.mapping[k] for k in keys], dtype=np.int64)

    # --- checks ------------------------------------------------------------------------------
    def problems(self, table: pa.Table) -> list[tuple[str, str, np.ndarray]]:
        """(reason, column, bad-row mask) for every kind of bad value in the chunk."""
        s, out = self.schema, []
        for column in (s.label.column, *s.extra_labels):
            values = table.column(column)
            nulls = _nulls(values)
            out.append(("null label", column, nulls))
            if column != s.label.column or s.label.threshold is None:
                v = floats(values)
                out.append(("label outside {0,1}", column, (v != 0) & (v != 1) & ~nulls))
        domains = table.column(s.domain.column)
        if self.new_domains is not None:     # pass 1 of --add-domains: every present value is a domain
            out.append(("unknown domain", s.domain.column, _nulls(domains)))
        else:
            out.append(("unknown domain", s.domain.column, self._domains(domains) < 0))
        for f in s.dense:
            v, nulls = floats(table.column(f.source)), _nulls(table.column(f.source))
            out.append(("null dense value", f.source, nulls))
            bad = ~np.isfinite(v) & ~nulls
            if f.scaling == "log1p_minmax":
                bad |= v <= -1
            out.append(("NaN/inf dense value", f.source, bad))
        for f in s.sparse:
            if f.multi_hot:
                out += self._list_problems(table, f)
            elif f.encoding == "identity":
                ids = pc.fill_null(table.column(f.source), 0).to_numpy()
                out.append(("negative id", f.source, ids < 0))
                if f.vocab_size:
                    out.append(("out-of-vocabulary id", f.source, ids >= f.vocab_size))
        if s.split.method == "time":
            out.append(("null time", s.split.time_column, _nulls(table.column(s.split.time_column))))
        return out

    def _list_problems(self, table: pa.Table, f) -> list[tuple[str, str, np.ndarray]]:
        lists = self.lists(table, f)
        flat = lists.flatten()
        out = [("null value in a list", f.source, rows_of(lists, _nulls(flat)))]
        if f.encoding == "identity":
            ids = pc.fill_null(flat, 0).to_numpy()
            out.append(("negative id", f.source, rows_of(lists, ids < 0)))
            if f.vocab_size:
                out.append(("out-of-vocabulary id", f.source, rows_of(lists, ids >= f.vocab_size)))
        return out

    def lists(self, table: pa.Table, f) -> pa.ListArray:
        """A multi_hot feature's raw column as lists (null elements kept: ``problems`` names them)."""
        try:
            return as_lists(table.column(f.source), f.separator, _value_type(f, self.sparse[f.name]))
        except ListValueError as exc:
            exc.column = f.source
            raise

    def valid_rows(self, chunk: Chunk, table: pa.Table, count: bool) -> np.ndarray:
        valid = np.ones(table.num_rows, dtype=bool)
        try:
            problems = self.problems(table)
        except ListValueError as exc:     # a list value of the wrong type: not a bad row, a bad column
            raise DataError(exc.message, file=chunk.file, column=exc.column,
                            row=None if exc.row is None else chunk.row_offset + exc.row) from None
        for reason, column, bad in problems:
            bad = bad & valid
            if not bad.any():
                continue
            i = int(np.flatnonzero(bad)[0])
            if self.bad_rows == "fail":
                raise DataError(f"{reason}: {_show(table.column(column)[i])} (--bad-rows skip drops such rows)",
                                file=chunk.file, row=chunk.row_offset + i, column=column)
            if count:
                self.skipped[reason] = self.skipped.get(reason, 0) + int(bad.sum())
            valid &= ~bad
        return valid

    # --- passes ------------------------------------------------------------------------------
    def observe(self, table: pa.Table, chunk: Chunk) -> None:
        for f in self.schema.sparse:
            try:
                if f.multi_hot:
                    lists = self.lists(table, f)
                    self._longest[f.name] = max(self._longest[f.name], longest(lists))
                    if self.max_len[f.name]:     # values cut from a list are not counted either
                        lists = truncate(lists, self.max_len[f.name])[0]
                    self.sparse[f.name].observe(lists.flatten())
                else:
                    self.sparse[f.name].observe(table.column(f.source).combine_chunks())
            except TypeError as exc:
                raise DataError(f"{exc}; set dtype: string for this feature", file=chunk.file,
                                row=f"rows {chunk.row_offset}..{chunk.row_offset + chunk.table.num_rows - 1}",
                                column=f.source) from None
        for f in self.schema.dense:
            self.dense[f.name].observe(floats(table.column(f.source)))
        if self.new_domains is not None:
            self.new_domains.add(pc.drop_null(table.column(self.schema.domain.column).combine_chunks()))

    def finish(self) -> None:
        for encoder in (*self.sparse.values(), *self.dense.values()):
            encoder.finish()
        for name, seen in self._longest.items():
            self.max_len[name] = self.max_len[name] or max(1, seen)
        if self.new_domains is not None:
            seen = self.new_domains.result().column("value").to_pylist()
            self.new_domains = None
            # a copy: the caller's schema keeps the domains it was given
            self.schema = dataclasses.replace(self.schema, domain=grown_domains(self.schema.domain, seen))
            self._map_domains()

    @property
    def unknown_ids(self) -> dict[str, int]:
        """Feature -> values encoded as 0 because the vocabulary lacks them (vocabulary and identity ids)."""
        return {name: int(e.unknown) for name, e in self.sparse.items() if not e.hashed}

    @property
    def truncated_lists(self) -> dict[str, dict]:
        """multi_hot feature -> its max_len and the rows whose lists were cut to it (pass 2), where any were."""
        return {name: {"max_len": self.max_len[name], "rows": n} for name, n in self.truncated.items() if n}

    def encode_features(self, table: pa.Table) -> dict[str, np.ndarray]:
        """The model's inputs of a chunk: sparse ids, scaled dense values, domain (-1 where unknown)."""
        s, cols = self.schema, {}
        for f in s.sparse:
            if f.multi_hot:
                cols[f.name] = self._encode_lists(table, f)
            else:
                cols[f.name] = self.sparse[f.name].encode(table.column(f.source).combine_chunks())
        domain = self._domains(table.column(s.domain.column))
        if s.domain.sparse_feature:
            cols[s.domain.sparse_feature] = domain + 1
        for f in s.dense:
            cols[f.name] = self.dense[f.name].encode(floats(table.column(f.source)))
        cols["domain"] = domain
        return cols

    def _encode_lists(self, table: pa.Table, f) -> pa.ListArray:
        lists, longer = truncate(self.lists(table, f), self.max_len[f.name])
        self.truncated[f.name] += longer
        flat = lists.flatten()
        if flat.null_count:      # prepare dropped such rows already; raw rows being scored did not
            first = int(np.flatnonzero(_nulls(flat))[0])
            error = ListValueError("null value in a list", int(pc.list_parent_indices(lists)[first].as_py()))
            error.column = f.source
            raise error
        return with_values(lists, self.sparse[f.name].encode(flat))

    def encode(self, table: pa.Table) -> dict[str, np.ndarray]:
        s, cols = self.schema, self.encode_features(table)
        label = floats(table.column(s.label.column))
        cols["label"] = (label > s.label.threshold if s.label.threshold is not None else label).astype(np.float32)
        for column in s.extra_labels:
            cols[column] = floats(table.column(column)).astype(np.float32)
        return cols

    def _domains(self, values: pa.ChunkedArray) -> np.ndarray:
        """Domain id per row, -1 where unknown (null, unmapped, out of range)."""
        d = self.schema.domain
        if d.mapping:
            index = pc.index_in(pc.cast(values, self.domain_keys.type), value_set=self.domain_keys)
            index = pc.fill_null(index, -1).to_numpy()
            return np.where(index >= 0, self.domain_ids[np.maximum(index, 0)], -1)
        v = floats(values)
        if d.bins:
            return np.where(np.isnan(v), -1, np.searchsorted(np.asarray(d.bins), v, side="right"))
        ok = (v >= 0) & (v < d.num_domains) & (v == np.floor(v))
        return np.where(ok, np.nan_to_num(v), -1).astype(np.int64)


def _encoder(f, parent: Parent | None):
    if f.encoding == "hash":
        return HashEncoder(f.buckets)
    if parent is None:
        return IdentityEncoder(f.vocab_size) if f.encoding == "identity" else VocabularyEncoder(f.min_count)
    old = parent.feature(f.name)
    if f.encoding == "identity":
        return IdentityEncoder(f.vocab_size, frozen_size=old.vocab_size, grow=parent.grow_vocab)
    return VocabularyEncoder(f.min_count, known=parent.vocabulary(f.name), grow=parent.grow_vocab)


def _value_type(f, encoder) -> pa.DataType | None:
    """The type a multi_hot feature's values are read as (text cells are split into strings)."""
    if f.encoding == "identity" or f.dtype == "int":
        return pa.int64()
    if f.dtype == "string":
        return pa.string()
    known = getattr(encoder, "known", None)     # a parent's vocabulary: read values as its type
    return known.column("value").type if known is not None else None


def _nulls(values) -> np.ndarray:
    return pc.is_null(values).to_numpy(zero_copy_only=False) if values.null_count else np.zeros(len(values), bool)


def floats(values) -> np.ndarray:
    """float64 numpy view of a numeric column, NaN where null."""
    return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)


def _show(value: pa.Scalar) -> str:
    return "null" if not value.is_valid else repr(value.as_py())
