"""Which worker holds which embedding rows: the sharding plan.

Three schemes, chosen per table:

* ``replicated``: every worker holds the whole table as an ordinary parameter; its gradient is
  all-reduced with the dense part (DDP).
* ``row_wise``: the ids are cut into contiguous blocks of ``ceil(num_rows / world_size)`` rows;
  worker ``r`` owns ids ``[r * block, min((r + 1) * block, num_rows))``.
* ``table_wise``: the whole table lives on one worker (tables are spread over the workers so that
  each holds about the same number of bytes).

``plan_sharding`` picks the scheme from ``embedding.sharding``: ``auto`` makes a table row-wise when
it has at least ``auto_row_wise_min_rows`` rows and replicated otherwise; the other values apply to
every table. ``embedding.overrides`` (table name -> scheme) wins over both. The plan is a pure
function of its inputs, so every worker computes the same plan without talking to the others.
"""
from __future__ import annotations

from dataclasses import dataclass

from hamur_dist.config import EmbeddingConfig
from hamur_dist.model.embedding import TableSpec

SCHEMES = ("replicated", "row_wise", "table_wise")
BYTES_PER_VALUE = 4   # tables are fp32


@dataclass(frozen=True)
class TablePlacement:
    """Where one table's rows live. ``owner`` is the holding rank for table-wise tables, else -1."""
    name: str
    num_rows: int
    dim: int
    scheme: str
    world_size: int
    owner: int = -1

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


@dataclass(frozen=True)
class ShardingPlan:
    world_size: int
    tables: tuple[TablePlacement, ...]

    def placement(self, name: str) -> TablePlacement:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"table '{name}' is not in the sharding plan (tables: {[t.name for t in self.tables]})")

    def bytes_on(self, rank: int) -> int:
        """Table bytes (weights only, fp32) that ``rank`` allocates."""
        return sum(t.rows_on(rank) * t.dim * BYTES_PER_VALUE for t in self.tables)

    def describe(self) -> str:
        """A text table: table, scheme, rows, placement, rows and bytes per worker, then per-worker totals."""
        header = ("table", "scheme", "rows", "placement", "rows/worker", "bytes/worker")
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
            bytes_cell = _per_worker_cell([n * t.dim * BYTES_PER_VALUE for n in per_rank], _human_bytes)
            lines.append((t.name, t.scheme, f"{t.num_rows:,}", where, rows_cell, bytes_cell))
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        text.append("")
        for rank in range(self.world_size):
            rows = sum(t.rows_on(rank) for t in self.tables)
            text.append(f"worker {rank}: {rows:,} rows, {_human_bytes(self.bytes_on(rank))} of tables")
        return "\n".join(text)


def _per_worker_cell(values: list[int], fmt) -> str:
    """One value when every worker holds the same, else the list in rank order."""
    if len(set(values)) == 1:
        return fmt(values[0])
    return " | ".join(fmt(v) for v in values)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def plan_sharding(specs: list[TableSpec], world_size: int, cfg: EmbeddingConfig) -> ShardingPlan:
    """Pick a scheme per table (see the module docstring) and place table-wise tables."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if cfg.sharding not in ("auto",) + SCHEMES:
        raise ValueError(f"embedding.sharding: {cfg.sharding!r} is not one of {['auto', *SCHEMES]}")
    if cfg.auto_row_wise_min_rows < 1:
        raise ValueError(f"embedding.auto_row_wise_min_rows must be >= 1, got {cfg.auto_row_wise_min_rows}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"table names must be unique, got {names}")
    for name, scheme in cfg.overrides.items():
        if name not in names:
            raise ValueError(f"embedding.overrides.{name}: no such table (tables: {names})")
        if scheme not in SCHEMES:
            raise ValueError(f"embedding.overrides.{name}: {scheme!r} is not one of {list(SCHEMES)}")

    def scheme_of(spec: TableSpec) -> str:
        if spec.name in cfg.overrides:
            return cfg.overrides[spec.name]
        if cfg.sharding == "auto":
            return "row_wise" if spec.num_rows >= cfg.auto_row_wise_min_rows else "replicated"
        return cfg.sharding

    schemes = {s.name: scheme_of(s) for s in specs}
    # Table-wise placement: biggest table first onto the worker with the fewest bytes so far
    # (row-wise tables load every worker about equally, so they do not change the choice).
    load = [0] * world_size
    owners: dict[str, int] = {}
    table_wise = [s for s in specs if schemes[s.name] == "table_wise"]
    for spec in sorted(table_wise, key=lambda s: (-s.num_rows * s.dim, s.name)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners[spec.name] = rank
        load[rank] += spec.num_rows * spec.dim
    tables = tuple(TablePlacement(s.name, s.num_rows, s.dim, schemes[s.name], world_size, owners.get(s.name, -1))
                   for s in specs)
    return ShardingPlan(world_size, tables)
