"""Bad data gets a clear error: which file, which row (or row group), which column, what is wrong.

Two moments need checks:
  * ``verify_dataset``: before training, a prepared dataset must match its manifest (every shard
    exists, is a whole Parquet file, has the rows, columns, types and sha256 the manifest says);
  * ``validate_batch``: the values of a batch obey the column contract of ``manifest.py`` (ids in
    range, finite dense values, labels in {0, 1}, known domains). The preparers run the same
    checks on raw input; training can run them on every batch it reads.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hamur_dist.data.manifest import Manifest, load_manifest
from hamur_dist.data.multi_hot import ListValueError, first_too_long, list_parts
from hamur_dist.fileio import sha256_file


class DataError(ValueError):
    """Input or prepared data is wrong. ``file``, ``row`` and ``column`` say where (None: unknown).

    ``row`` is the 0-based data row inside ``file`` (header lines not counted), or a text such as
    ``"row group 3"`` when only that is known.
    """

    def __init__(self, message: str, file: str | Path | None = None, row: int | str | None = None,
                 column: str | None = None):
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if self.file is not None:
            where.append(self.file)
        if row is not None:
            where.append(f"row {row}" if isinstance(row, (int, np.integer)) else str(row))
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def shard_schema(manifest: Manifest) -> pa.Schema:
    """The Arrow schema every shard of ``manifest`` has (the column contract of manifest.py)."""
    types: dict[str, pa.DataType] = {f.name: pa.list_(pa.int64()) if f.multi_hot else pa.int64()
                                     for f in manifest.sparse}
    types.update({f.name: pa.float32() for f in manifest.dense})
    types[manifest.domain.column] = pa.int64()
    for label in (manifest.label, *manifest.extra_labels):
        types[label] = pa.float32()
    if manifest.user_column:
        types.setdefault(manifest.user_column, pa.int64())
    return pa.schema([(name, types[name]) for name in manifest.columns])


def check_columns(present: list[str], expected: list[str], file: str | Path,
                  allowed_extra: tuple[str, ...] = (), hint: str = "") -> None:
    """A missing or unexpected column is an error naming the column."""
    seen = set()
    for name in present:
        if name in seen:
            raise DataError("column appears twice", file=file, column=name)
        seen.add(name)
    for name in expected:
        if name not in seen:
            raise DataError(f"missing column (has: {', '.join(present)})", file=file, column=name)
    for name in present:
        if name not in expected and name not in allowed_extra:
            raise DataError(f"unexpected column{hint}", file=file, column=name)


# --- whole datasets ------------------------------------------------------------------------------
def _open_shard(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise DataError("shard listed in the manifest does not exist", file=path)
    if path.stat().st_size == 0:
        raise DataError("empty file (not a Parquet file)", file=path)
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file (truncated or corrupt?): {exc}", file=path) from None


def verify_dataset(root: str | Path, splits: list[str] | tuple[str, ...] | None = None,
                   check_hashes: bool = True) -> Manifest:
    """Check that the shards of ``root`` are exactly what its manifest describes; return the manifest."""
    root = Path(root)
    manifest = load_manifest(root)
    expected = shard_schema(manifest)
    for split in splits if splits is not None else list(manifest.splits):
        if split not in manifest.splits:
            raise DataError(f"the manifest has no split '{split}' (has {sorted(manifest.splits)})",
                            file=root / "manifest.json")
        info = manifest.splits[split]
        total = 0
        for shard in info.shards:
            path = root / shard.path
            meta = _open_shard(path).metadata
            schema = meta.schema.to_arrow_schema()
            check_columns(schema.names, expected.names, path, hint=" (not in the manifest)")
            for field in expected:
                actual = schema.field(field.name).type
                if actual != field.type:
                    raise DataError(f"type {actual}, the manifest contract says {field.type}",
                                    file=path, column=field.name)
            if meta.num_rows != shard.rows:
                raise DataError(f"has {meta.num_rows} rows, the manifest says {shard.rows}", file=path)
            if check_hashes:
                digest = sha256_file(path)
                if digest != shard.sha256:
                    raise DataError(f"sha256 {digest[:12]}... does not match the manifest's "
                                    f"{shard.sha256[:12]}... (file changed after preparation?)", file=path)
            total += shard.rows
        if total != info.rows:
            raise DataError(f"split '{split}': shards hold {total} rows, the manifest says {info.rows}",
                            file=root / "manifest.json")
    return manifest


# --- batches -------------------------------------------------------------------------------------
def _column(batch, name: str, file, row_offset: int) -> np.ndarray:
    if isinstance(batch, Mapping):
        if name not in batch:
            raise DataError(f"missing column (batch has {sorted(batch)})", file=file, column=name)
        values = batch[name]
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = _arrow_to_numpy(values, name, file, row_offset)
        return np.asarray(values)
    if name not in batch.schema.names:
        raise DataError(f"missing column (batch has {batch.schema.names})", file=file, column=name)
    return _arrow_to_numpy(batch.column(name), name, file, row_offset)


def _arrow_to_numpy(values, name, file, row_offset) -> np.ndarray:
    if values.null_count:
        first = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("null value", file=file, row=row_offset + first, column=name)
    return values.to_numpy() if isinstance(values, pa.ChunkedArray) else values.to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class ValueCheck:
    """One column's value contract (manifest.py): which values break it, and how to say so.

    ``kind``: "id" (an integer in ``[0, high)``; no upper bound when ``high`` is None), "finite"
    (a dense value) or "binary" (a label in {0, 1}). Training's batch collator and
    ``validate_batch`` run the same checks.
    """
    column: str
    kind: str
    high: int | None = None
    what: str = "id"            # how an id column's values are named in messages

    def first_bad(self, values: np.ndarray) -> int | None:
        """Index of the first value that breaks the contract, or None (a fast path when none does)."""
        if len(values) == 0:
            return None
        if self.kind == "id":
            if values.min() >= 0 and (self.high is None or values.max() < self.high):
                return None
            bad = values < 0 if self.high is None else (values < 0) | (values >= self.high)
        elif self.kind == "finite":
            finite = np.isfinite(values)
            if finite.all():
                return None
            bad = ~finite
        else:
            bad = (values != 0) & (values != 1)
            if not bad.any():
                return None
        return int(np.flatnonzero(bad)[0])

    def message(self, value) -> str:
        if self.kind == "finite":
            return f"dense value {value} is not finite"
        if self.kind == "binary":
            return f"label {value} is not 0 or 1"
        if self.what == "domain":
            return f"unknown domain {value} (num_domains {self.high})"
        if value < 0:
            return f"negative {self.what} {value}"
        return f"{self.what} {value} is out of vocabulary (vocab_size {self.high})"


def value_checks(manifest: Manifest, with_user: bool = True) -> list[ValueCheck]:
    """Every column's value check, in manifest order (sparse, dense, domain, labels, user)."""
    checks = [ValueCheck(f.name, "id", f.vocab_size) for f in manifest.sparse]
    checks += [ValueCheck(f.name, "finite") for f in manifest.dense]
    checks.append(ValueCheck(manifest.domain.column, "id", manifest.domain.num_domains, what="domain"))
    checks += [ValueCheck(label, "binary") for label in (manifest.label, *manifest.extra_labels)]
    if with_user and manifest.user_column:
        checks.append(ValueCheck(manifest.user_column, "id", None, what="user id"))
    return checks


def validate_batch(batch, manifest: Manifest, file: str | Path | None = None, row_offset: int = 0) -> None:
    """Check one batch (pyarrow Table / RecordBatch, or a dict of numpy arrays as Ray Data yields it).

    Raises ``DataError`` at the first bad value: an id outside ``[0, vocab_size)``, a NaN/inf dense
    value, a domain outside ``[0, num_domains)``, a label not in {0, 1}, a null anywhere (a null list
    or a null inside the list of a multi_hot feature; an empty list is fine), a list over max_len.
    """
    sparse = {f.name for f in manifest.sparse}
    lists = {f.name: f.max_len for f in manifest.sparse if f.multi_hot}
    for check in value_checks(manifest):
        if check.column in lists:
            _validate_lists(batch, check, lists[check.column], file, row_offset)
            continue
        values = _column(batch, check.column, file, row_offset)
        if check.column in sparse and not np.issubdtype(values.dtype, np.integer):
            raise DataError(f"ids must be integers, got {values.dtype}", file=file, column=check.column)
        bad = check.first_bad(values)
        if bad is not None:
            raise DataError(check.message(values[bad]), file=file, row=row_offset + bad, column=check.column)


def _validate_lists(batch, check: ValueCheck, max_len: int, file, row_offset: int) -> None:
    """``validate_batch`` for a multi_hot column: every row a list of at most max_len valid ids."""
    name = check.column
    present = name in batch if isinstance(batch, Mapping) else name in batch.schema.names
    if not present:
        raise DataError("missing column", file=file, column=name)
    try:
        flat, lengths = list_parts(batch[name] if isinstance(batch, Mapping) else batch.column(name))
    except ListValueError as exc:
        raise DataError(exc.message, file=file, column=name,
                        row=None if exc.row is None else row_offset + exc.row) from None
    long = first_too_long(lengths, max_len)
    if long is not None:
        raise DataError(f"a list of {lengths[long]} ids, more than max_len {max_len}", file=file,
                        row=row_offset + long, column=name)
    bad = check.first_bad(flat)
    if bad is not None:
        row = int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
        raise DataError(check.message(flat[bad]), file=file, row=row_offset + row, column=name)
