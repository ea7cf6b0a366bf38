"""Which worker holds which embedding rows, and how each table is updated: the sharding plan.

Placements (``scheme``), chosen per table:

* ``replicated``: every worker holds the whole table.
* ``row_wise``: the ids are cut into contiguous blocks of ``ceil(num_rows / world_size)`` rows;
  worker ``r`` owns ids ``[r * block, min((r + 1) * block, num_rows))``.
* ``table_wise``: the whole table lives on one worker (tables are spread over the workers so that
  each holds about the same number of bytes).

Updates: ``dense`` (replicated only: an ``nn.Embedding`` parameter, DDP all-reduces its whole
gradient, the dense optimiser steps every row) or ``sparse`` (only the rows a step touched: their
gradients are exchanged as (row ids, rows) and ``SparseRowOptimizer`` updates them; always for
row-wise and table-wise tables).

``embedding.sharding`` names one mode for every table: ``replicated`` (dense), ``replicated_sparse``,
``row_wise``, ``table_wise``, or ``auto``, a cost model per table:

1. a table of at most ``dense_max_kb`` stays replicated dense: its whole step costs less than the
   sparse bookkeeping (unique ids, an exchange per step). Rows touched per step per worker ~
   min(rows, batch size x max_len); a table with at most ``dense_rows_factor`` x that many rows is tiny too:
   a step touches a large share of it anyway;
2. otherwise replicated sparse while the replicated tables' bytes per worker (weights, plus a
   gradient for dense ones, plus optimiser state) fit ``replicated_max_mb``, smallest tables first;
3. the tables that do not fit go row-wise (each worker then holds 1/world of them). One worker
   replicates everything: row-wise would hold the same bytes.
The dense/sparse choice depends on the per-worker batch only, not the worker count, so a run resumed
on another number of workers keeps the same tables in the sparse checkpoint files.
``auto_row_wise_min_rows`` (when set) sends tables at least that big row-wise regardless, and
``embedding.overrides`` (table name -> mode) wins over everything. The plan is a pure function of its
inputs, so every worker computes the same plan without talking to the others.
"""
from __future__ import annotations

from dataclasses import dataclass

from hamur_dist.config import EmbeddingConfig
from hamur_dist.model.embedding import TableSpec

SCHEMES = ("replicated", "row_wise", "table_wise")
MODES = EmbeddingConfig.MODES     # what embedding.sharding / overrides may name (besides auto)
BYTES_PER_VALUE = 4   # tables are fp32


@dataclass(frozen=True)
class TablePlacement:
    """Where one table's rows live and how they are updated. ``owner`` is the holding rank for
    table-wise tables, else -1. ``update`` defaults to dense for replicated, sparse otherwise."""
    name: str
    num_rows: int
    dim: int
    scheme: str
    world_size: int
    owner: int = -1
    update: str = ""
    reason: str = ""

    def __post_init__(self):
        if not self.update:
            object.__setattr__(self, "update", "dense" if self.scheme == "replicated" else "sparse")
        if self.update not in ("dense", "sparse") or (self.update == "dense" and self.scheme != "replicated"):
            raise ValueError(f"table '{self.name}': update {self.update!r} does not go with scheme {self.scheme!r}")

    @property
    def block(self) -> int:
        """Rows per worker of a row-wise table (the last worker may hold fewer)."""
        return -(-self.num_rows // self.world_size)

    def row_range(self, rank: int) -> tuple[int, int]:
        """The ids ``[start, end)`` that ``rank`` holds (empty range when it holds none)."""
        if self.scheme == "replicated":
            return 0, self.num_rows
        if self.scheme == "table_wise":
            return (0, self.num_rows) if rank == self.owner else (0, 0)
        start = min(rank * self.block, self.num_rows)
        return start, min(start + self.block, self.num_rows)

    def rows_on(self, rank: int) -> int:
        start, end = self.row_range(rank)
        return end - start

    @property
    def is_sharded(self) -> bool:
        return self.scheme != "replicated"

    @property
    def is_sparse(self) -> bool:
        """Updated row-sparsely: not an ``nn.Parameter``; weights live in the collection's ``local_weight``."""
        return self.update == "sparse"

    @property
    def mode(self) -> str:
        return "replicated_sparse" if self.scheme == "replicated" and self.is_sparse else self.scheme


@dataclass(frozen=True)
class ShardingPlan:
    world_size: int
    tables: tuple[TablePlacement, ...]

    def placement(self, name: str) -> TablePlacement:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"table '{name}' is not in the sharding plan (tables: {[t.name for t in self.tables]})")

    @property
    def any_sparse(self) -> bool:
        """Whether some table needs ``ShardedEmbeddingCollection`` (sharded or sparse-updated)."""
        return any(t.is_sparse for t in self.tables)

    def bytes_on(self, rank: int) -> int:
        """Table bytes (weights only, fp32) that ``rank`` allocates."""
        return sum(t.rows_on(rank) * t.dim * BYTES_PER_VALUE for t in self.tables)

    def describe(self) -> str:
        """A text table: table, scheme, update, rows, placement, rows and bytes per worker, why; then
        per-worker totals."""
        header = ("table", "scheme", "update", "rows", "placement", "rows/worker", "bytes/worker", "why")
        lines = [header]
        for t in self.tables:
            per_rank = [t.rows_on(r) for r in range(self.world_size)]
            if t.scheme == "replicated":
                where = "all workers"
            elif t.scheme == "table_wise":
                where = f"rank {t.owner}"
            else:
                where = f"{t.block:,}-row blocks"
            rows_cell = _per_worker_cell(per_rank, lambda n: f"{n:,}")
            bytes_cell = _per_worker_cell([n * t.dim * BYTES_PER_VALUE for n in per_rank], human_bytes)
            lines.append((t.name, t.scheme, t.update, f"{t.num_rows:,}", where, rows_cell, bytes_cell, t.reason))
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        text.append("")
        for rank in range(self.world_size):
            rows = sum(t.rows_on(rank) for t in self.tables)
            text.append(f"worker {rank}: {rows:,} rows, {human_bytes(self.bytes_on(rank))} of tables")
        return "\n".join(text)


def _per_worker_cell(values: list[int], fmt) -> str:
    """One value when every worker holds the same, else the list in rank order."""
    if len(set(values)) == 1:
        return fmt(values[0])
    return " | ".join(fmt(v) for v in values)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def replicated_bytes(spec: TableSpec, update: str, optimizer: str) -> int:
    """Bytes one worker holds for a replicated table: weights, optimiser state, and for a dense
    update its dense gradient. Sparse Adam also keeps an int32 step count per row."""
    row = spec.dim * BYTES_PER_VALUE
    state = 2 * row if optimizer == "adam" else row
    if update == "dense":
        return spec.num_rows * (2 * row + state)
    return spec.num_rows * (row + state + (4 if optimizer == "adam" else 0))


def _check(specs: list[TableSpec], world_size: int, cfg: EmbeddingConfig, batch_size: int) -> None:
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg.validate()
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"table names must be unique, got {names}")
    for name in cfg.overrides:
        if name not in names:
            raise ValueError(f"embedding.overrides.{name}: no such table (tables: {names})")


def _auto_modes(specs: list[TableSpec], world_size: int, cfg: EmbeddingConfig, batch_size: int,
                fixed: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """The cost model (module docstring) for the tables not in ``fixed``: name -> (mode, reason)."""
    out: dict[str, tuple[str, str]] = {}
    candidates = []
    for spec in specs:
        if spec.name in fixed:
            continue
        touched = min(spec.num_rows, batch_size * spec.max_len)     # max_len ids per row if multi-valued
        if cfg.auto_row_wise_min_rows is not None and spec.num_rows >= cfg.auto_row_wise_min_rows:
            out[spec.name] = ("row_wise", f">= auto_row_wise_min_rows ({cfg.auto_row_wise_min_rows:,})")
        elif spec.num_rows * spec.dim * BYTES_PER_VALUE <= cfg.dense_max_kb * 1024:
            out[spec.name] = ("replicated", f"small: {human_bytes(spec.num_rows * spec.dim * BYTES_PER_VALUE)} "
                                            f"(dense up to dense_max_kb={cfg.dense_max_kb:g})")
        elif spec.num_rows <= cfg.dense_rows_factor * touched:
            out[spec.name] = ("replicated", f"tiny: a step touches up to {touched / spec.num_rows:.0%} of it "
                                            f"(dense at >= {1 / cfg.dense_rows_factor:.0%})")
        else:
            candidates.append(spec)
    budget = cfg.replicated_max_mb * 2**20
    used = 0     # bytes per worker of the tables already replicated (dense ones, overrides)
    for spec in specs:
        mode = out.get(spec.name, fixed.get(spec.name, ("", "")))[0]
        if mode in ("replicated", "replicated_sparse"):
            update = "dense" if mode == "replicated" else "sparse"
            used += replicated_bytes(spec, update, cfg.sparse_optimizer)
    for spec in sorted(candidates, key=lambda s: (s.num_rows * s.dim, s.name)):
        need = replicated_bytes(spec, "sparse", cfg.sparse_optimizer)
        if world_size == 1:
            out[spec.name] = ("replicated_sparse", "1 worker: sharding would not save memory")
        elif used + need <= budget:
            used += need
            out[spec.name] = ("replicated_sparse", f"fits replicated_max_mb ({human_bytes(used)} of "
                                                   f"{human_bytes(budget)} used)")
        else:
            out[spec.name] = ("row_wise", f"needs {human_bytes(need)} replicated, {human_bytes(max(0, budget - used))} "
                                          "of replicated_max_mb left")
    return out


def plan_sharding(specs: list[TableSpec], world_size: int, cfg: EmbeddingConfig,
                  batch_size: int = 4096) -> ShardingPlan:
    """Pick a mode per table (see the module docstring) and place table-wise tables.
    ``batch_size``: the per-worker batch (``data.batch_size``), for the rows a step touches."""
    _check(specs, world_size, cfg, batch_size)
    fixed = {s.name: (cfg.overrides[s.name], "override") for s in specs if s.name in cfg.overrides}
    if cfg.sharding != "auto":
        fixed.update({s.name: (cfg.sharding, f"sharding={cfg.sharding}") for s in specs if s.name not in fixed})
    modes = {**fixed, **_auto_modes(specs, world_size, cfg, batch_size, fixed)}
    # Table-wise placement: biggest table first onto the worker with the fewest bytes so far
    # (row-wise tables load every worker about equally, so they do not change the choice).
    load = [0] * world_size
    owners: dict[str, int] = {}
    table_wise = [s for s in specs if modes[s.name][0] == "table_wise"]
    for spec in sorted(table_wise, key=lambda s: (-s.num_rows * s.dim, s.name)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners[spec.name] = rank
        load[rank] += spec.num_rows * spec.dim
    tables = []
    for s in specs:
        mode, reason = modes[s.name]
        scheme = "replicated" if mode == "replicated_sparse" else mode
        update = "sparse" if mode != "replicated" else "dense"
        tables.append(TablePlacement(s.name, s.num_rows, s.dim, scheme, world_size, owners.get(s.name, -1),
                                     update, reason))
    return ShardingPlan(world_size, tuple(tables))
