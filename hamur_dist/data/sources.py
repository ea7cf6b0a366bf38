"""Reading input files in bounded chunks: CSV (pyarrow.csv.open_csv, gzip too) and Parquet.

Every chunk carries its file and the file row of its first row, so any later check can name the
exact row. Chunks never cross files and have exactly ``chunk_rows`` rows (the last of a file fewer),
so what a preparer does with them does not depend on how pyarrow happened to split its blocks.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hamur_dist.data.multi_hot import is_list_type
from hamur_dist.data.validation import DataError, check_columns

CSV_BLOCK_BYTES = 4 << 20     # the streaming reader reads ~20 blocks ahead: this bounds that memory
_KIND_OK = {
    "int": pa.types.is_integer,
    "numeric": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "any": lambda t: True,
    # a multi_hot feature: a text cell joined by a separator, a list column, or one value per row
    "multi": lambda t: is_list_type(t) or not pa.types.is_nested(t),
}
_CSV_TYPE = {"int": pa.int64(), "numeric": pa.float64(), "string": pa.string(), "multi": pa.string()}


@dataclass
class InputFile:
    path: Path
    split: str | None = None          # the split every row of this file belongs to (split method files)


@dataclass
class Chunk:
    table: pa.Table
    file: Path
    row_offset: int                   # file row (0-based, header not counted) of the chunk's first row
    split: str | None


@dataclass
class ReadOptions:
    """How to read the files and which columns they must hold (column -> kind: int/numeric/string/any/multi)."""
    columns: dict[str, str]
    drop: tuple[str, ...] = ()
    format: str = "auto"
    delimiter: str = ","
    header: bool = True
    column_names: tuple[str, ...] = ()
    encoding: str = "utf8"
    chunk_rows: int = 262_144
    bad_rows: str = "fail"
    block_bytes: int = CSV_BLOCK_BYTES


def file_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if re.search(r"\.(csv|tsv|txt|dat|data)(\.gz|\.bz2|\.zst)?$", name) or name.endswith(".gz"):
        return "csv"
    raise DataError("cannot tell the format from the file name; set input.format: csv or parquet", file=path)


class MalformedRows:
    """Counts (skip) or remembers the first (fail) CSV line with the wrong number of fields."""

    def __init__(self, policy: str):
        self.policy, self.count, self.first = policy, 0, None

    def __call__(self, row) -> str:
        if self.policy == "skip":
            self.count += 1
            return "skip"
        self.first = row
        return "error"


def iter_chunks(files: list[InputFile], opts: ReadOptions, malformed: MalformedRows | None = None) -> Iterator[Chunk]:
    for item in files:
        reader = _csv_batches if file_format(item.path, opts.format) == "csv" else _parquet_batches
        yield from _rebatch(reader(item.path, opts, malformed), item, opts.chunk_rows)


def _rebatch(batches, item: InputFile, chunk_rows: int) -> Iterator[Chunk]:
    pending: list[pa.RecordBatch] = []
    count = offset = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield Chunk(table.slice(0, chunk_rows), item.path, offset, item.split)
            offset += chunk_rows
            rest = table.slice(chunk_rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield Chunk(pa.Table.from_batches(pending), item.path, offset, item.split)


# --- CSV ---------------------------------------------------------------------------------------
def _csv_read_options(opts: ReadOptions) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(block_size=opts.block_bytes, encoding=opts.encoding,
                             column_names=list(opts.column_names) or None,
                             skip_rows=1 if opts.header and opts.column_names else 0)


def _csv_batches(path: Path, opts: ReadOptions, malformed: MalformedRows | None) -> Iterator[pa.RecordBatch]:
    types = {c: _CSV_TYPE[k] for c, k in opts.columns.items() if k in _CSV_TYPE}
    parse = pacsv.ParseOptions(delimiter=opts.delimiter, invalid_row_handler=malformed)
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)   # "" = missing, as in Parquet
    if path.stat().st_size == 0:
        raise DataError("empty file", file=path)
    rows = 0
    try:
        reader = pacsv.open_csv(path, read_options=_csv_read_options(opts), parse_options=parse,
                                convert_options=convert)
        check_columns(reader.schema.names, list(opts.columns), path, allowed_extra=opts.drop,
                      hint=" (not in the schema; list it under drop: to ignore it)")
        for batch in reader:
            rows += batch.num_rows
            yield batch
    except pa.ArrowInvalid as exc:
        raise _csv_error(exc, path, opts, types, malformed, rows) from None


def _csv_error(exc, path, opts, types, malformed, rows_ok) -> DataError:
    text = str(exc)
    if malformed is not None and malformed.first is not None:
        bad = malformed.first
        line = bad.number if bad.number is not None else _locate_malformed(path, opts)
        row = None if line is None else line - (2 if opts.header else 1)
        return DataError(f"line {line} has {bad.actual_columns} fields, expected {bad.expected_columns} "
                         f"(truncated or malformed row): {bad.text[:80]!r}", file=path, row=row)
    match = re.search(r"In CSV column #(\d+): .*?conversion error to (\w+)", text)
    if match:
        names = list(opts.column_names) or _csv_header(path, opts)
        column = names[int(match.group(1))] if int(match.group(1)) < len(names) else None
        try:
            target = types.get(column) or pa.type_for_alias(match.group(2))
        except ValueError:
            target = None
        if column is None or target is None:
            return DataError(f"cannot read CSV: {text}", file=path, column=column)
        row, value = _locate_bad_value(path, opts, column, target)
        hint = "" if column in types else " (type guessed from the first rows; set dtype: string?)"
        return DataError(f"value {value!r} is not a valid {target} (wrong type?){hint}",
                         file=path, row=row, column=column)
    return DataError(f"cannot read CSV: {text}", file=path)


def _locate_malformed(path: Path, opts: ReadOptions) -> int | None:
    """Line number of the first malformed row (single-threaded parsing knows line numbers)."""
    found = []

    def remember(row):
        found.append(row.number)
        return "error"
    read = _csv_read_options(opts)
    read.use_threads = False
    try:
        for _ in pacsv.open_csv(path, read_options=read, convert_options=pacsv.ConvertOptions(column_types={}),
                                parse_options=pacsv.ParseOptions(delimiter=opts.delimiter,
                                                                 invalid_row_handler=remember)):
            pass
    except pa.ArrowInvalid:
        pass
    return found[0] if found else None


def _csv_header(path: Path, opts: ReadOptions) -> list[str]:
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16, encoding=opts.encoding),
                            parse_options=pacsv.ParseOptions(delimiter=opts.delimiter),
                            convert_options=pacsv.ConvertOptions(column_types={}, strings_can_be_null=True))
    return reader.schema.names


def _locate_bad_value(path: Path, opts: ReadOptions, column: str, target: pa.DataType):
    """Re-read one column as text and find the first value that does not convert (binary search)."""
    convert = pacsv.ConvertOptions(column_types={column: pa.string()}, include_columns=[column],
                                   strings_can_be_null=True)
    reader = pacsv.open_csv(path, read_options=_csv_read_options(opts),
                            parse_options=pacsv.ParseOptions(delimiter=opts.delimiter,
                                                             invalid_row_handler=lambda r: "skip"),
                            convert_options=convert)
    offset = 0
    for batch in reader:
        values = pc.utf8_trim_whitespace(batch.column(0))
        if not _converts(values, target):
            lo, hi = 0, len(values) - 1          # invariant: values[:hi + 1] fails to convert
            while lo < hi:
                mid = (lo + hi) // 2
                if _converts(values.slice(0, mid + 1), target):
                    lo = mid + 1
                else:
                    hi = mid
            return offset + lo, values[lo].as_py()
        offset += batch.num_rows
    return None, None


def _converts(values: pa.Array, target: pa.DataType) -> bool:
    try:
        pc.cast(values, target)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


# --- Parquet -----------------------------------------------------------------------------------
def _parquet_batches(path: Path, opts: ReadOptions, malformed) -> Iterator[pa.RecordBatch]:
    if path.stat().st_size == 0:
        raise DataError("empty file (not a Parquet file)", file=path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file (truncated or corrupt?): {exc}", file=path) from None
    schema = pf.schema_arrow
    check_columns(schema.names, list(opts.columns), path, allowed_extra=opts.drop,
                  hint=" (not in the schema; list it under drop: to ignore it)")
    for column, kind in opts.columns.items():
        actual = schema.field(column).type
        if not _KIND_OK[kind](actual):
            raise DataError(f"has type {actual}, expected {kind} (wrong type)", file=path, column=column)
    rows = 0
    for group in range(pf.num_row_groups):
        try:
            table = pf.read_row_group(group, columns=list(opts.columns))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read (corrupt file?): {exc}", file=path,
                            row=f"row group {group} (rows from {rows})") from None
        rows += table.num_rows
        yield from table.to_batches()
