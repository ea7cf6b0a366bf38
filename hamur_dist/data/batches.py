"""Manifest rows -> the model's tensors, checked on the way; and finding the bad row when one breaks.

``BatchCollator`` runs in Ray Data's prefetch thread (training) or in a plain loop (evaluation,
scoring). It refuses nulls and applies ``validation.value_checks``, the same checks ``validate_batch``
runs; a broken value raises ``InputDataError`` naming the column. ``bad_row_error`` (the batch is at
hand) or ``find_bad_row`` / ``locate_bad_row`` (rescanning the shards) then name file and row.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from hamur_dist.data.manifest import Manifest, sparse_width
from hamur_dist.data.multi_hot import ListValueError, first_too_long, list_parts, pad
from hamur_dist.data.validation import DataError, validate_batch, value_checks


class InputDataError(ValueError):
    """A batch read at training or scoring time breaks the manifest's contract. ``split``: where it was
    read, when known (the driver then rescans that split's shards to name file and row)."""

    def __init__(self, message: str, split: str | None = None):
        super().__init__(message, split)     # both in args: the error survives pickling between processes
        self.message, self.split = message, split

    def __str__(self) -> str:
        return self.message


class BatchCollator:
    """Arrow batch -> {"sparse": (B,S) int64, "dense": (B,Dn) f32, "domain": (B,), "label": (B,)[, "user"]}.

    ``S = sparse_width(manifest.sparse)``: one column per single-valued feature; a multi_hot feature
    takes max_len consecutive columns, its ids first and -1 in the unused ones (manifest order).
    """

    def __init__(self, manifest: Manifest, with_user: bool = False, validate: bool = True):
        self.sparse = [f.name for f in manifest.sparse]
        self.lists = {f.name: f.max_len for f in manifest.sparse if f.multi_hot}
        self.width = sparse_width(manifest.sparse)
        self.dense = [f.name for f in manifest.dense]
        self.domain = manifest.domain.column
        self.label = manifest.label
        self.user = manifest.user_column if with_user else None
        self.id_columns = {*self.sparse, self.domain, *([self.user] if self.user else [])}
        self.checks = {c.column: c for c in value_checks(manifest, with_user=with_user)} if validate else {}

    def _column(self, batch, name: str) -> np.ndarray:
        try:
            col = batch[name] if isinstance(batch, dict) else batch.column(name)
        except KeyError:
            raise InputDataError(f"column '{name}' is missing from the input shards") from None
        col = self._without_nulls(col, name)
        check = self.checks.get(name)
        bad = check.first_bad(col) if check is not None else None
        if bad is not None:
            raise InputDataError(f"column '{name}': {check.message(col[bad])}")
        return col

    def _without_nulls(self, col, name: str) -> np.ndarray:
        """The column as numpy; a null is refused here, before a cast turns it into a huge negative id."""
        if isinstance(col, (pa.Array, pa.ChunkedArray)):
            if col.null_count:
                raise InputDataError(f"column '{name}': null value")
            return col.to_numpy() if isinstance(col, pa.ChunkedArray) else col.to_numpy(zero_copy_only=False)
        col = np.asarray(col)
        # Ray Data hands numpy: a null arrives as None (object column) or NaN (an int column made float)
        if col.dtype == object and any(value is None for value in col):
            raise InputDataError(f"column '{name}': null value")
        if name in self.id_columns and np.issubdtype(col.dtype, np.floating) and np.isnan(col).any():
            raise InputDataError(f"column '{name}': null value (NaN in an id column)")
        return col

    def _list_column(self, batch, name: str, max_len: int) -> np.ndarray:
        """A multi_hot column as (rows, max_len) ids padded with -1; a null list or element is refused."""
        try:
            col = batch[name] if isinstance(batch, dict) else batch.column(name)
        except KeyError:
            raise InputDataError(f"column '{name}' is missing from the input shards") from None
        try:
            flat, lengths = list_parts(col)
        except ListValueError as exc:
            raise InputDataError(f"column '{name}': {exc.message}") from None
        long = first_too_long(lengths, max_len)
        if long is not None:
            raise InputDataError(f"column '{name}': a list of {lengths[long]} ids, more than max_len {max_len}")
        check = self.checks.get(name)
        bad = check.first_bad(flat) if check is not None else None
        if bad is not None:
            raise InputDataError(f"column '{name}': {check.message(flat[bad])}")
        return pad(flat, lengths, max_len)

    def __call__(self, batch) -> dict[str, torch.Tensor]:
        """``batch``: a pyarrow Table, or a dict of numpy arrays (what Ray Data hands a plain callable)."""
        domain = self._column(batch, self.domain)
        n = len(domain)
        sparse = np.empty((n, self.width), dtype=np.int64)
        at = 0
        for name in self.sparse:
            if name in self.lists:
                sparse[:, at:at + self.lists[name]] = self._list_column(batch, name, self.lists[name])
                at += self.lists[name]
            else:
                sparse[:, at] = self._column(batch, name)
                at += 1
        dense = np.empty((n, len(self.dense)), dtype=np.float32)
        for j, name in enumerate(self.dense):
            dense[:, j] = self._column(batch, name)
        label = self._column(batch, self.label)
        # copies: Arrow hands out read-only views, which torch refuses to wrap without a warning
        out = {"sparse": torch.from_numpy(sparse), "dense": torch.from_numpy(dense),
               "domain": torch.from_numpy(np.array(domain, dtype=np.int64)),
               "label": torch.from_numpy(np.array(label, dtype=np.float32))}
        if self.user:
            out["user"] = torch.from_numpy(np.array(self._column(batch, self.user), dtype=np.int64))
        return out


def bad_row_error(batch, manifest: Manifest, file: str, row_offset: int, error: InputDataError) -> DataError:
    """The ``DataError`` naming file, row and column of what ``error`` found in ``batch`` (rows from
    ``row_offset`` of ``file``)."""
    try:
        validate_batch(batch, manifest, file=file, row_offset=row_offset)
    except DataError as exc:
        return exc
    return DataError(f"{error} (somewhere in the {batch.num_rows} rows from row {row_offset})", file=file)


def find_bad_row(files: list[str], manifest: Manifest) -> DataError | None:
    """Slow path after an ``InputDataError``: scan the shards for the first bad value."""
    import pyarrow.parquet as pq

    for path in files:
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=manifest.columns):
            try:
                validate_batch(batch, manifest, file=path, row_offset=offset)
            except DataError as exc:
                return exc
            offset += batch.num_rows
    return None


def locate_bad_row(files: list[str], manifest: Manifest) -> str:
    """``find_bad_row`` as text: file, row, column and what is wrong."""
    found = find_bad_row(files, manifest)
    if found is None:
        return "the bad row could not be located again (did the files change during the run?)"
    return str(found)
