"""Which split, and which shard, each row goes to: exact sizes, seeded, decided chunk by chunk.

Exact random splits while streaming: before each chunk we know how many rows every split (or
shard) still needs; a multivariate hypergeometric draw says how many of this chunk's rows each one
takes, and a shuffle of those labels says which. Every row has the same chance to land anywhere,
as with a global permutation, but memory is one chunk.

Shuffling without holding the data: rows are spread over temporary buckets, one per output shard
(again with exact sizes), then each bucket is shuffled in memory and written as one shard.
"""
from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hamur_dist.data.manifest import SPLITS
from hamur_dist.data.validation import DataError


def split_sizes(total: int, fractions: list[float]) -> list[int]:
    train = round(total * fractions[0])
    val = min(round(total * fractions[1]), total - train)
    return [train, val, total - train - val]


def time_cutoffs(counts: pa.Table, fractions: list[float]) -> tuple[list[float], list[int]]:
    """Cut-off times c1 <= c2 (train: t <= c1, val: c1 < t <= c2, test: later) and the split sizes.

    Rows with equal times stay together, so sizes can exceed the fractions by the rows of one time.
    """
    values = counts.column("value").to_numpy()
    cumulative = np.cumsum(counts.column("count").to_numpy())
    total = int(cumulative[-1]) if len(cumulative) else 0
    targets = np.cumsum(split_sizes(total, fractions))[:2]
    cutoffs, sizes, taken = [], [], 0
    for target in targets:
        if target <= taken:
            cut = cutoffs[-1] if cutoffs else -np.inf
        else:
            i = int(np.searchsorted(cumulative, target))
            cut = values[min(i, len(values) - 1)]
        through = int(cumulative[np.searchsorted(values, cut, side="right") - 1]) if np.isfinite(cut) else 0
        cutoffs.append(float(cut))
        sizes.append(through - taken)
        taken = through
    sizes.append(total - taken)
    return cutoffs, sizes


def assign_by_hash(table: pa.Table, columns: list[str], fractions: list[float], seed: int) -> np.ndarray:
    """Split index per row from a seeded hash of ``columns`` (pandas' stable hash_array, mixed with
    splitmix64): the same values always give the same split."""
    import pandas as pd   # only hashing needs it

    from hamur_dist.data.encoders import splitmix64

    mixed = np.full(table.num_rows, np.uint64(seed), dtype=np.uint64)
    for column in columns:
        values = table.column(column).to_numpy(zero_copy_only=False)
        mixed = splitmix64(mixed ^ pd.util.hash_array(values))
    unit = (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.searchsorted(np.cumsum(fractions)[:2], unit, side="right").astype(np.int64)


def assign_by_time(times: np.ndarray, cutoffs: list[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(cutoffs), times, side="left").astype(np.int64)


class QuotaDraw:
    """Random labels 0..k-1 for a stream of rows, so that label j is given exactly quotas[j] times."""

    def __init__(self, quotas: list[int], rng: np.random.Generator):
        self.remaining = np.asarray(quotas, dtype=np.int64)
        self.rng = rng

    def __call__(self, n: int) -> np.ndarray:
        if n > self.remaining.sum():
            raise DataError(f"{n} rows but only {self.remaining.sum()} places left: "
                            "did the input change between the two passes?")
        counts = self.rng.multivariate_hypergeometric(self.remaining, n) if n else np.zeros_like(self.remaining)
        self.remaining -= counts
        labels = np.repeat(np.arange(len(counts)), counts)
        self.rng.shuffle(labels)
        return labels


def shard_quotas(rows: int, shard_rows: int) -> list[int]:
    full, rest = divmod(rows, shard_rows)
    return [shard_rows] * full + ([rest] if rest else [])


class ShuffledSplits:
    """Spill each split's rows into random buckets (Arrow IPC, lz4), then write each bucket shuffled."""

    def __init__(self, tmp_dir: Path, sizes: dict[str, int], shard_rows: int, seed: int):
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.quotas = {s: shard_quotas(n, shard_rows) for s, n in sizes.items()}
        self.draws = {s: QuotaDraw(q, np.random.default_rng([seed, 2, SPLITS.index(s)]))
                      for s, q in self.quotas.items()}
        self._writers: dict[tuple[str, int], pa.ipc.RecordBatchFileWriter] = {}
        _allow_open_files(sum(len(q) for q in self.quotas.values()) + 64)

    def add(self, split: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        buckets = self.draws[split](table.num_rows)
        order = np.argsort(buckets, kind="stable")
        counts = np.bincount(buckets, minlength=len(self.quotas[split]))
        table = table.take(pa.array(order))
        start = 0
        for bucket in np.flatnonzero(counts):
            self._writer(split, int(bucket), table.schema).write_table(table.slice(start, int(counts[bucket])))
            start += int(counts[bucket])

    def _writer(self, split: str, bucket: int, schema: pa.Schema):
        key = (split, bucket)
        if key not in self._writers:
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            self._writers[key] = pa.ipc.new_file(self._path(split, bucket), schema, options=options)
        return self._writers[key]

    def _path(self, split: str, bucket: int) -> Path:
        return self.tmp_dir / f"{split}-{bucket:05d}.arrow"

    def finish(self, writers: dict, progress=None) -> None:
        """Shuffle every bucket in memory and write it as one shard of its split's ``SplitWriter``."""
        for writer in self._writers.values():
            writer.close()
        for split, quotas in self.quotas.items():
            for bucket in range(len(quotas)):
                path = self._path(split, bucket)
                with pa.memory_map(str(path)) as source:
                    table = pa.ipc.open_file(source).read_all()
                rng = np.random.default_rng([self.seed, 3, SPLITS.index(split), bucket])
                writers[split].write_shard(table, order=rng.permutation(table.num_rows))
                del table
                path.unlink()
                if progress is not None:
                    progress.update(quotas[bucket])
        self.tmp_dir.rmdir()


def filter_rows(table: pa.Table, mask: np.ndarray) -> pa.Table:
    return table.filter(pa.array(mask)) if not mask.all() else table


def take_split(table: pa.Table, labels: np.ndarray, index: int) -> pa.Table:
    return table.filter(pc.equal(pa.array(labels), index))


def _allow_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
