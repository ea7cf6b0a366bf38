"""Multi-valued (``multi_hot``) sparse features: raw cells -> lists, and lists -> the padded batch layout.

A multi_hot feature's raw column holds several values per row: a text cell joined by a separator
(``Animation|Comedy``) or a native Parquet list column. Preparing turns it into a ``list<int64>``
column of 0..max_len ids per row; a batch gives such a feature ``max_len`` consecutive columns of its
``(B, S)`` sparse tensor, unused slots holding ``PAD`` (-1). Plain pyarrow / numpy, no Ray, no torch.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hamur_dist.data.manifest import PAD_ID as PAD

_INT = r"^[+-]?[0-9]+$"


class ListValueError(ValueError):
    """A list column breaks the contract at ``row`` (0-based in the array given, None: unknown); callers
    add the file, and the column where the raiser did not."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message, row)
        self.message, self.row = message, row
        self.column: str | None = None

    def __str__(self) -> str:
        return self.message


def is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _combined(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def as_lists(values, separator: str, value_type: pa.DataType | None = None) -> pa.ListArray:
    """A raw column as lists: text cells are split on ``separator`` (elements trimmed), a list column is
    taken as it is, a scalar column becomes one-element lists. A null or empty cell is an empty list;
    an empty element (``a||b``) or a null inside a list stays a null element for the caller to refuse.
    ``value_type``: cast the elements (text -> int64 checked, naming the row of a non-integer)."""
    values = _combined(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        blank = pc.equal(pc.utf8_trim_whitespace(values), "")
        values = pc.if_else(blank, pa.scalar(None, values.type), values)   # "" and "  " cells: no values
        lists = pc.split_pattern(values, separator)
        flat = pc.utf8_trim_whitespace(lists.flatten())
        flat = pc.if_else(pc.equal(flat, ""), pa.scalar(None, flat.type), flat)
        lists = _rebuild(lists, flat)
    elif is_list_type(values.type):
        lists = values.cast(pa.list_(values.type.value_type)) if not pa.types.is_list(values.type) else values
        lists = _rebuild(lists, lists.flatten())
    else:                                  # one value per row; a null is no value
        lengths = pc.is_valid(values).to_numpy(zero_copy_only=False).astype(np.int64)
        lists = _from_lengths(lengths, pc.drop_null(values))
    if value_type is not None and lists.type.value_type != value_type:
        lists = _rebuild(lists, _cast_values(lists, value_type))
    return lists


def _rebuild(lists: pa.ListArray, flat: pa.Array) -> pa.ListArray:
    """``flat`` (the non-null lists' values, in order) as lists of the lengths of ``lists``, null lists empty."""
    return _from_lengths(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False), flat)


def _from_lengths(lengths: np.ndarray, flat: pa.Array) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat)


def _cast_values(lists: pa.ListArray, value_type: pa.DataType) -> pa.Array:
    flat = lists.flatten()
    if pa.types.is_integer(value_type) and (pa.types.is_string(flat.type) or pa.types.is_large_string(flat.type)):
        ok = pc.fill_null(pc.match_substring_regex(flat, _INT), True).to_numpy(zero_copy_only=False)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            row = int(pc.list_parent_indices(lists)[i].as_py())
            raise ListValueError(f"value {flat[i].as_py()!r} in the list is not a valid {value_type}", row)
    try:
        return pc.cast(flat, value_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ListValueError(f"list values do not convert to {value_type} ({exc})") from None


def rows_of(lists: pa.ListArray, flat_mask: np.ndarray) -> np.ndarray:
    """Per-row mask: the rows holding an element where ``flat_mask`` (over ``lists.flatten()``) is set."""
    rows = np.zeros(len(lists), dtype=bool)
    if flat_mask.any():
        rows[pc.list_parent_indices(lists).to_numpy()[flat_mask]] = True
    return rows


def truncate(lists: pa.ListArray, max_len: int) -> tuple[pa.ListArray, int]:
    """The first ``max_len`` values of every list, and how many lists were longer."""
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    longer = int((lengths > max_len).sum())
    if not longer:
        return lists, 0
    return pc.list_slice(lists, 0, max_len), longer


def longest(lists: pa.ListArray) -> int:
    top = pc.max(pc.list_value_length(lists)).as_py()
    return int(top or 0)


def with_values(lists: pa.ListArray, ids: np.ndarray) -> pa.ListArray:
    """``lists`` with its flattened values replaced by ``ids`` (int64 lists)."""
    return _rebuild(lists, pa.array(ids, pa.int64()))


# --- batches: list columns -> (flat ids, lengths) -> padded -------------------------------------
def list_parts(values) -> tuple[np.ndarray, np.ndarray]:
    """A multi_hot column of a batch as (flat int64 ids, length per row). ``values``: an Arrow list
    array, or what Ray Data hands a numpy batch: an object array of arrays (or lists), or a 2-D array
    of equal-length rows. A null list, a null (None / NaN) element or a non-integer is refused."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _arrow_parts(_combined(values))
    values = np.asarray(values)
    if values.ndim == 2:
        flat = _integers(values.reshape(-1), row_of=lambda i: i // max(values.shape[1], 1))
        return flat, np.full(len(values), values.shape[1], dtype=np.int64)
    if values.ndim != 1 or values.dtype != object:
        raise ListValueError(f"expected a list per row, got an array of {values.dtype} with shape {values.shape}")
    parts, lengths = [], np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        if value is None:
            raise ListValueError("null list", row)
        part = np.asarray(value)
        if part.ndim != 1:
            raise ListValueError(f"expected a list of ids, got {value!r}", row)
        parts.append(_integers(part, row_of=lambda i, row=row: row))
        lengths[row] = len(part)
    flat = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return flat.astype(np.int64, copy=False), lengths


def _arrow_parts(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if not is_list_type(values.type):
        raise ListValueError(f"expected a list column, got {values.type}")
    if values.null_count:
        raise ListValueError("null list", int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]))
    flat = values.flatten()
    if flat.null_count:
        first = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
        raise ListValueError("null value in a list", int(pc.list_parent_indices(values)[first].as_py()))
    if not pa.types.is_integer(flat.type):
        raise ListValueError(f"ids must be integers, got {flat.type}")
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
    return flat.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), lengths


def _integers(part: np.ndarray, row_of) -> np.ndarray:
    """``part`` as int64; a None / NaN is a null element, a fraction or text is not an id."""
    if part.size == 0 or np.issubdtype(part.dtype, np.integer):
        return part.astype(np.int64, copy=False)
    if part.dtype == object:
        nulls = np.array([v is None for v in part])
        if nulls.any():
            raise ListValueError("null value in a list", row_of(int(np.flatnonzero(nulls)[0])))
        try:
            part = part.astype(np.float64)
        except (TypeError, ValueError):
            raise ListValueError(f"ids must be integers, got {part[:3].tolist()!r}...", row_of(0)) from None
    if np.issubdtype(part.dtype, np.floating):
        nan = np.isnan(part)
        if nan.any():
            raise ListValueError("null value in a list (NaN)", row_of(int(np.flatnonzero(nan)[0])))
        fraction = part != np.floor(part)
        if not fraction.any():
            return part.astype(np.int64)
        raise ListValueError(f"id {part[fraction][0]} is not an integer", row_of(int(np.flatnonzero(fraction)[0])))
    raise ListValueError(f"ids must be integers, got {part.dtype}", row_of(0))


def pad(flat: np.ndarray, lengths: np.ndarray, max_len: int) -> np.ndarray:
    """(rows, max_len) int64: row i's ids first, then ``PAD``. Every length must be <= max_len."""
    out = np.full((len(lengths), max_len), PAD, dtype=np.int64)
    if flat.size:
        starts = np.cumsum(lengths) - lengths
        rows = np.repeat(np.arange(len(lengths)), lengths)
        out[rows, np.arange(flat.size) - np.repeat(starts, lengths)] = flat
    return out


def first_too_long(lengths: np.ndarray, max_len: int) -> int | None:
    over = lengths > max_len
    return int(np.flatnonzero(over)[0]) if over.any() else None
