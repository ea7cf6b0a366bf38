"""Raw values -> model inputs: sparse ids (vocabulary, hashing, identity) and scaled dense floats.

Each encoder works in two streaming passes: ``observe`` every chunk (pass 1: counts, min/max,
moments), ``finish`` once, then ``encode`` every chunk (pass 2). Memory is bounded by the number of
distinct values kept in a vocabulary (use hashing for huge id spaces), never by the row count.
Id 0 always means unknown / rare / missing.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_U64 = np.uint64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised: a fast, well-mixed uint64 -> uint64 bijection."""
    z = np.asarray(x).astype(np.uint64, copy=True)
    z += _U64(0x9E3779B97F4A7C15)
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


class ValueCounter:
    """How often each distinct value occurs, over a stream of Arrow arrays (pyarrow group-by merges)."""

    def __init__(self, merge_every: int = 2_000_000):
        self._parts: list[pa.Table] = []
        self._pending = 0
        self._merged_rows = 0
        self._merge_every = merge_every

    def add(self, values: pa.Array) -> None:
        counts = pc.value_counts(pc.drop_null(values))
        part = pa.table({"value": counts.field("values"), "count": counts.field("counts")})
        self._parts.append(part)
        self._pending += part.num_rows
        if self._pending > max(self._merge_every, 2 * self._merged_rows):
            self._merge()

    def _merge(self) -> None:
        if len(self._parts) > 1:
            try:
                table = pa.concat_tables(self._parts)
            except pa.ArrowInvalid as exc:
                raise TypeError(f"values change type between chunks ({exc})") from None
            merged = table.group_by("value").aggregate([("count", "sum")])
            self._parts = [merged.rename_columns(["value", "count"])]
        self._merged_rows = self._parts[0].num_rows if self._parts else 0
        self._pending = 0

    def result(self) -> pa.Table:
        """Columns ``value`` (sorted ascending) and ``count``."""
        self._merge()
        if not self._parts:
            return pa.table({"value": pa.array([], pa.int64()), "count": pa.array([], pa.int64())})
        table = self._parts[0]
        return table.take(pc.sort_indices(table, sort_keys=[("value", "ascending")]))


class VocabularyEncoder:
    """Ids 1..n for the values seen at least ``min_count`` times, in sorted value order; 0 otherwise.

    ``known`` (a parent dataset's vocabulary, values in id order, with their counts) freezes the
    mapping: nothing is learnt from this data, unless ``grow``, which appends values not known yet
    (seen at least ``min_count`` times, sorted) after the known ones, so every known value keeps its id.
    ``unknown`` counts the present values that were encoded as 0.
    """
    hashed = False

    def __init__(self, min_count: int = 1, known: pa.Table | None = None, grow: bool = False):
        self.min_count = min_count
        self.known, self.grow = known, grow
        self._counter = ValueCounter() if known is None or grow else None
        self.values: pa.Array | None = None
        self.unknown = 0

    def observe(self, values: pa.Array) -> None:
        if self._counter is not None:
            self._counter.add(values)

    def finish(self) -> None:
        if self.known is None:
            counts = self._counter.result()
            self.counts = counts.filter(pc.greater_equal(counts.column("count"), self.min_count))
        else:
            self.counts = self.known.select(["value", "count"])
            if self.grow:
                seen = self._counter.result()
                seen = seen.filter(pc.greater_equal(seen.column("count"), self.min_count))
                try:
                    fresh = seen.filter(pc.invert(pc.is_in(seen.column("value"), value_set=self.known.column("value"))))
                    self.counts = pa.concat_tables([self.counts, fresh.cast(self.counts.schema)])
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise TypeError(f"values have another type than the parent's vocabulary ({exc})") from None
        self.values = self.counts.column("value").combine_chunks()
        self._counter = None

    @property
    def vocab_size(self) -> int:
        return len(self.values) + 1

    def encode(self, values: pa.Array) -> np.ndarray:
        if self.known is not None and values.type != self.values.type:
            values = pc.cast(values, self.values.type)
        index = pc.index_in(values, value_set=self.values)
        self.unknown += len(values) - values.null_count - (len(index) - index.null_count)
        return pc.fill_null(pc.add(index, 1), 0).to_numpy().astype(np.int64, copy=False)


class HashEncoder:
    """Ids 1..buckets-1 from a stable hash of the value (pandas' hash_array); 0 for missing values."""
    hashed = True

    def __init__(self, buckets: int):
        self.vocab_size = buckets

    def observe(self, values: pa.Array) -> None:
        pass

    def finish(self) -> None:
        pass

    def encode(self, values: pa.Array) -> np.ndarray:
        import pandas as pd   # only hashing needs it (pandas' stable hash_array); keeps imports light

        valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
        raw = values.to_numpy(zero_copy_only=False)
        ids = np.zeros(len(values), dtype=np.int64)
        if valid.any():
            hashed = pd.util.hash_array(raw[valid])
            ids[valid] = (hashed % _U64(self.vocab_size - 1)).astype(np.int64) + 1
        return ids


class IdentityEncoder:
    """Already-encoded non-negative integer ids, kept as they are; vocab_size = declared or max + 1.

    ``frozen_size`` (a parent dataset's vocab_size) freezes the table: larger ids are encoded as 0 and
    counted in ``unknown``, unless ``grow``, which raises vocab_size to cover them."""
    hashed = False

    def __init__(self, vocab_size: int = 0, frozen_size: int | None = None, grow: bool = False):
        self.declared = frozen_size or vocab_size
        self.vocab_size = self.declared
        self.frozen, self.grow = frozen_size is not None, grow
        self._max = -1
        self.unknown = 0

    def observe(self, values: pa.Array) -> None:
        top = pc.max(values).as_py()
        if top is not None:
            self._max = max(self._max, int(top))

    def finish(self) -> None:
        if not self.declared or (self.frozen and self.grow):
            self.vocab_size = max(self.declared, self._max + 1 if self._max >= 0 else 1)

    def encode(self, values: pa.Array) -> np.ndarray:
        ids = pc.fill_null(values, 0).to_numpy().astype(np.int64, copy=False)
        if self.frozen:
            outside = ids >= self.vocab_size
            if outside.any():
                self.unknown += int(outside.sum())
                ids = np.where(outside, 0, ids)
        return ids


class DenseScaler:
    """Streaming min / max / mean / variance (Chan's parallel merge) and the chosen scaling."""

    def __init__(self, scaling: str = "none", fixed: dict | None = None):
        self.scaling = scaling
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = np.inf, -np.inf
        self.fixed = dict(fixed) if fixed is not None else None   # a parent dataset's statistics, kept as they are
        if self.fixed is not None:
            self.min, self.max = self.fixed.get("min", np.inf), self.fixed.get("max", -np.inf)
            self.mean = self.fixed.get("mean", 0.0)

    def observe(self, values: np.ndarray) -> None:
        if values.size == 0 or self.fixed is not None:
            return
        if self.scaling == "log1p_minmax":
            values = np.log1p(values)
        n, mean = values.size, float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        delta, total = mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min, self.max = min(self.min, float(values.min())), max(self.max, float(values.max()))

    def finish(self) -> None:
        pass

    @property
    def params(self) -> dict:
        if self.fixed is not None:
            return dict(self.fixed)
        if self.scaling in ("minmax", "log1p_minmax"):
            return {"min": self.min, "max": self.max}
        if self.scaling == "standard":
            std = (self.m2 / self.count) ** 0.5 if self.count else 1.0
            return {"mean": self.mean, "std": std}
        return {}

    def encode(self, values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float64, copy=False)
        if self.scaling == "log1p_minmax":
            values = np.log1p(values)
        if self.scaling in ("minmax", "log1p_minmax"):
            span = self.max - self.min
            values = (values - self.min) / span if span > 0 else np.zeros_like(values)
        elif self.scaling == "standard":
            std = self.params["std"]
            values = (values - self.mean) / (std if std > 0 else 1.0)
        return values.astype(np.float32)
