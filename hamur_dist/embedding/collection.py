"""``ShardedEmbeddingCollection``: ``EmbeddingCollectionInterface`` over tables spread across workers.

Dense-update tables (replicated, ``update == "dense"``) are ordinary ``nn.Embedding`` parameters under
``tables.<name>`` (DDP syncs them, the dense optimiser updates them). Every sparse-update table is not
a parameter at all: each worker keeps its rows of them in one plain tensor ``local_weight`` (not a
parameter or buffer, so neither DDP nor ``state_dict`` sees it) that ``SparseRowOptimizer`` updates.
``local_weight`` holds this rank's row-wise / table-wise rows first, then every replicated-sparse
table whole, table by table in ``specs`` order.

Global row space (sharded tables). The sharded rows of all tables are numbered in one space: rank 0's
local rows first, then rank 1's, and so on; inside a rank, table by table in ``specs`` order. A
(table, id) pair maps to ``fused = id + offset[table][owner]``. Sorting the fused ids therefore
groups them by owner, so one ``torch.unique`` both deduplicates a batch and orders it for the all-to-all.

Forward, per batch (one exchange for all sharded tables together):
1. fused ids of every sharded column, ``torch.unique`` -> sorted unique ids + inverse;
2. all-to-all of the per-owner counts, then of the unique ids;
3. each owner gathers the asked-for rows from ``local_weight``;
4. all-to-all of the rows back (``exchange_rows``, autograd-aware), ``rows[inverse]``.
A multi-valued table has ``max_len`` id columns (slots): lookups go by column (each knows its
table), pads arrive as id 0 and the interface pools the slots after, so the exchange stays one.
Backward sends the row gradients to the owners, who keep them (with the local row index) until
``SparseRowOptimizer.step`` sums duplicates and updates those rows. With sharded tables forward is a
collective: every rank calls it the same number of times, and runs backward through it, even with an
empty batch. Replicated-sparse tables are looked up locally (no exchange in forward); their touched
rows' gradients are exchanged in ``coalesced_grads`` (``all_gather_row_sums``), which is then a
collective too, and every rank applies the same summed gradients, so the replicas stay identical.

Gradient scale: by default the gradients of sparse rows are divided by the world size, the same
averaging DDP applies to dense tables, so a table trains the same whichever scheme holds it.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from hamur_dist.embedding.exchange import Exchanger, all_gather_row_sums, exchange_rows
from hamur_dist.embedding.init_rows import init_rows
from hamur_dist.embedding.planner import ShardingPlan, TablePlacement
from hamur_dist.model.embedding import EmbeddingCollectionInterface, TableSpec, check_ids



class ShardedEmbeddingCollection(EmbeddingCollectionInterface):
    """Dense-replicated, replicated-sparse, row-wise and table-wise tables behind the interface models
    use (module docstring)."""

    def __init__(self, specs: list[TableSpec], plan: ShardingPlan, rank: int, world_size: int,
                 init_std: float = 1e-2, process_group=None, device: str | torch.device = "cpu",
                 init_seed: int | None = None, average_grads: bool = True):
        super().__init__(specs)     # checks: at least one table, one shared dim
        if plan.world_size != world_size or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} / world_size {world_size} do not fit a plan for {plan.world_size} workers")
        if world_size > 1 and dist.is_initialized():
            group_rank, group_size = dist.get_rank(process_group), dist.get_world_size(process_group)
            if (group_rank, group_size) != (rank, world_size):
                raise ValueError(f"rank {rank} / world_size {world_size} differ from the process group's "
                                 f"{group_rank} / {group_size}")
        elif world_size > 1:
            raise RuntimeError("world_size > 1 needs torch.distributed to be initialised first")
        for spec in specs:
            placed = plan.placement(spec.name)
            if (placed.num_rows, placed.dim) != (spec.num_rows, spec.dim):
                raise ValueError(f"table '{spec.name}': spec has {spec.num_rows} x {spec.dim}, "
                                 f"plan has {placed.num_rows} x {placed.dim}")
        self.plan = plan
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.grad_scale = 1.0 / world_size if average_grads else 1.0
        self.exchanger = Exchanger(rank, world_size, process_group, self.device)
        seed = torch.initial_seed() if init_seed is None else init_seed

        placements = [plan.placement(s.name) for s in specs]
        self.tables = nn.ModuleDict()
        for p in placements:
            if not p.is_sparse:
                table = nn.Embedding(p.num_rows, p.dim, device=self.device)
                with torch.no_grad():
                    init_rows(table.weight, p.name, 0, init_std, seed)
                self.tables[p.name] = table
        self._dense = [i for i, p in enumerate(placements) if not p.is_sparse]     # spec indices
        self._dense_cols = [c for c, t in enumerate(self.slot_tables) if not placements[t].is_sparse]
        self._sharded: list[TablePlacement] = [p for p in placements if p.is_sharded]
        self._replicated: list[TablePlacement] = [p for p in placements if p.is_sparse and not p.is_sharded]
        # lookups go by id column (slot); a multi-valued table has max_len columns
        self._sharded_cols = [c for c, t in enumerate(self.slot_tables) if placements[t].is_sharded]
        self._replicated_cols = [c for c, t in enumerate(self.slot_tables)
                                 if placements[t].is_sparse and not placements[t].is_sharded]
        self._sharded_col_tables = [placements[self.slot_tables[c]] for c in self._sharded_cols]
        self._replicated_col_tables = [placements[self.slot_tables[c]] for c in self._replicated_cols]

        # Local layout of every rank, so each rank can compute any id's place in the global row space.
        rows_on = [[p.rows_on(r) for p in self._sharded] for r in range(world_size)]
        rank_rows = [sum(r) for r in rows_on]
        self._rank_base = [sum(rank_rows[:r]) for r in range(world_size + 1)]
        self._local_base: dict[str, int] = {}     # this rank: table -> first row in local_weight
        offsets = []
        for j, p in enumerate(self._sharded):
            per_rank = []
            for r in range(world_size):
                base = self._rank_base[r] + sum(rows_on[r][:j])
                per_rank.append(base - p.row_range(r)[0])
                if r == rank:
                    self._local_base[p.name] = base - self._rank_base[r]
            offsets.append(per_rank)
        column_table = [self._sharded.index(p) for p in self._sharded_col_tables]
        self._fused_offset = torch.tensor(offsets, dtype=torch.int64, device=self.device).reshape(-1, world_size)
        self._fused_offset = self._fused_offset[column_table]     # per sharded column
        self._rank_ends = torch.tensor(self._rank_base[1:], dtype=torch.int64, device=self.device)
        self._num_rows = torch.tensor([p.num_rows for p in self._sharded_col_tables], dtype=torch.int64,
                                      device=self.device)
        # replicated-sparse tables after this rank's sharded rows
        self._replicated_base = end = rank_rows[rank]
        for p in self._replicated:
            self._local_base[p.name], end = end, end + p.num_rows
        self._replicated_offset = torch.tensor([self._local_base[p.name] for p in self._replicated_col_tables],
                                               dtype=torch.int64, device=self.device)
        self._replicated_rows = torch.tensor([p.num_rows for p in self._replicated_col_tables], dtype=torch.int64,
                                             device=self.device)

        self.local_weight = torch.empty(end, self.dim, device=self.device)
        for p in self._sharded + self._replicated:
            if p.rows_on(rank):
                init_rows(self.local_table(p.name), p.name, p.row_range(rank)[0], init_std, seed)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []   # (local rows, their leaf with .grad)

    # ----- EmbeddingCollectionInterface -----
    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """A collective when some table is sharded: see the module docstring."""
        if ids.dtype != torch.int64:
            raise ValueError(f"expected int64 ids, got {ids.dtype}")
        ids = ids.to(self.device)
        columns: list[torch.Tensor | None] = [None] * self.num_slots
        if self.multi_valued and self._dense_cols:     # nn.Embedding's own error names no table
            dense = [self.specs[self.slot_tables[c]] for c in self._dense_cols]
            check_ids(ids[:, self._dense_cols], [s.name for s in dense],
                      torch.tensor([s.num_rows for s in dense], device=self.device))
        for i in self._dense:
            start, end = self.slot_ranges[i]
            if end - start == 1:
                columns[start] = self.tables[self.specs[i].name](ids[:, start])
            else:       # one lookup (one dense gradient) per table, not per slot
                columns[start:end] = self.tables[self.specs[i].name](ids[:, start:end]).unbind(1)
        for cols, lookup in ((self._sharded_cols, self._lookup_sharded),
                             (self._replicated_cols, self._lookup_replicated)):
            if cols:
                looked_up = lookup(ids[:, cols])
                for j, i in enumerate(cols):
                    columns[i] = looked_up[:, j]
        return torch.stack(columns, dim=1)

    def _keep_for_backward(self, local_rows: torch.Tensor, rows: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            rows.requires_grad_()
            self._pending.append((local_rows, rows))

    def _lookup_replicated(self, ids: torch.Tensor) -> torch.Tensor:
        check_ids(ids, [p.name for p in self._replicated_col_tables], self._replicated_rows)
        unique, inverse = torch.unique(ids + self._replicated_offset, sorted=True, return_inverse=True)
        rows = self.local_weight.index_select(0, unique)
        self._keep_for_backward(unique, rows)
        return rows.index_select(0, inverse.reshape(-1)).view(*inverse.shape, self.dim)

    def _lookup_sharded(self, ids: torch.Tensor) -> torch.Tensor:
        check_ids(ids, [p.name for p in self._sharded_col_tables], self._num_rows)
        fused = torch.empty_like(ids)
        for j, p in enumerate(self._sharded_col_tables):
            if p.scheme == "row_wise":
                owner = torch.div(ids[:, j], p.block, rounding_mode="floor")
                fused[:, j] = ids[:, j] + self._fused_offset[j][owner]
            else:
                fused[:, j] = ids[:, j] + self._fused_offset[j][p.owner]
        unique, inverse = torch.unique(fused, sorted=True, return_inverse=True)
        # unique is sorted and each owner's ids form one range of the global space
        cum = torch.searchsorted(unique, self._rank_ends)
        send_counts = torch.diff(cum, prepend=cum.new_zeros(1))
        recv_counts = self.exchanger.exchange_counts(send_counts)
        wanted, owned = send_counts.tolist(), recv_counts.tolist()
        asked = self.exchanger.all_to_all(unique, wanted, owned)
        local_rows = asked - self._rank_base[self.rank]
        rows = self.local_weight.index_select(0, local_rows)     # index_select: fastest gather on CPU
        self._keep_for_backward(local_rows, rows)
        unique_rows = exchange_rows(rows, self.exchanger, owned, wanted, self.grad_scale)
        # index_select's backward is index_add_ (cheaper than advanced indexing's index_put_ with accumulate)
        return unique_rows.index_select(0, inverse.reshape(-1)).view(*inverse.shape, self.dim)

    # ----- sparse-row gradients (consumed by SparseRowOptimizer) -----
    def coalesced_grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sorted unique local rows, summed gradient rows) of every lookup with a backward since
        the last ``clear_grads``. Rows looked up only without backward are not included. With
        replicated-sparse tables and more than one worker this is a collective (it exchanges their
        rows' gradients): every rank must call it the same number of times."""
        done = [(rows, leaf.grad) for rows, leaf in self._pending if leaf.grad is not None]
        if done:
            rows = torch.cat([r for r, _ in done])
            grads = torch.cat([g for _, g in done])
            unique, inverse = torch.unique(rows, sorted=True, return_inverse=True)
            summed = torch.zeros(unique.numel(), self.dim, dtype=grads.dtype, device=self.device)
            summed.index_add_(0, inverse, grads)
        else:
            unique = torch.empty(0, dtype=torch.int64, device=self.device)
            summed = torch.empty(0, self.dim, dtype=self.local_weight.dtype, device=self.device)
        if not self._replicated or self.world_size == 1:
            return unique, summed
        split = int(torch.searchsorted(unique, self._replicated_base))
        # the replicated region starts at a different local row on each rank: exchange offsets into it
        rep_rows, rep_grads = all_gather_row_sums(self.exchanger, unique[split:] - self._replicated_base,
                                                  summed[split:], self.grad_scale)
        return torch.cat([unique[:split], rep_rows + self._replicated_base]), torch.cat([summed[:split], rep_grads])

    def clear_grads(self) -> None:
        self._pending.clear()

    def sparse_grads(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per sparse table on this rank: (global ids, gradient rows), for tests and debugging
        (``coalesced_grads``: a collective with replicated-sparse tables)."""
        rows, grads = self.coalesced_grads()
        out = {}
        for p in self._sharded + self._replicated:
            base, (start, end) = self._local_base[p.name], p.row_range(self.rank)
            mask = (rows >= base) & (rows < base + end - start)
            out[p.name] = (rows[mask] - base + start, grads[mask])
        return out

    # ----- layout, state, memory -----
    def sharded_table_names(self) -> list[str]:
        """Row-wise and table-wise tables."""
        return [p.name for p in self._sharded]

    def sparse_table_names(self) -> list[str]:
        """Every table held in ``local_weight`` (sharded or replicated-sparse), in ``specs`` order."""
        return [s.name for s in self.specs if s.name in self._local_base]

    def sharded_parameter_names(self) -> list[str]:
        """``EmbeddingCollection`` state-dict keys of the row-wise and table-wise tables."""
        return [f"tables.{name}.weight" for name in self.sharded_table_names()]

    def local_row_range(self, name: str) -> tuple[int, int]:
        """The ids ``[start, end)`` of table ``name`` held on this rank (all of them if replicated)."""
        return self.plan.placement(name).row_range(self.rank)

    def local_slice(self, name: str) -> slice:
        """Where table ``name``'s local rows sit in ``local_weight`` (sparse-update tables only)."""
        if name not in self._local_base:
            raise KeyError(f"table '{name}' is updated densely (sparse tables: {self.sparse_table_names()})")
        start, end = self.local_row_range(name)
        return slice(self._local_base[name], self._local_base[name] + end - start)

    def local_table(self, name: str) -> torch.Tensor:
        """This rank's rows of table ``name`` (a view; the whole table if replicated)."""
        if name in self.tables:
            return self.tables[name].weight
        return self.local_weight[self.local_slice(name)]

    def local_bytes(self) -> int:
        """Bytes of embedding tables this worker holds (``local_weight`` plus the dense tables)."""
        replicated = sum(t.weight.numel() * t.weight.element_size() for t in self.tables.values())
        return self.local_weight.numel() * self.local_weight.element_size() + replicated

    @torch.no_grad()
    def load_full_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Take an ``EmbeddingCollection`` state dict (full tables) and keep this rank's rows."""
        for spec in self.specs:
            key = f"tables.{spec.name}.weight"
            if key not in state_dict:
                raise KeyError(f"state dict has no '{key}' (keys: {sorted(state_dict)})")
            full = state_dict[key]
            if tuple(full.shape) != (spec.num_rows, spec.dim):
                raise ValueError(f"'{key}' has shape {tuple(full.shape)}, expected ({spec.num_rows}, {spec.dim})")
            start, end = self.local_row_range(spec.name)
            self.local_table(spec.name).copy_(full[start:end])

    def _apply(self, fn, recurse=True):
        """``.to(device)`` / ``.double()`` etc. also move the local shard (not a parameter or buffer,
        so ``nn.Module`` would skip it). Build the ``SparseRowOptimizer`` after moving, as with torch's."""
        super()._apply(fn, recurse)
        self.local_weight = fn(self.local_weight)
        self._fused_offset, self._rank_ends, self._num_rows = (
            fn(self._fused_offset), fn(self._rank_ends), fn(self._num_rows))
        self._replicated_offset, self._replicated_rows = fn(self._replicated_offset), fn(self._replicated_rows)
        self.device = self.exchanger.device = self.local_weight.device
        self.dim = self.local_weight.shape[1]
        self._pending.clear()
        return self

    def extra_repr(self) -> str:
        return (f"rank={self.rank}, world_size={self.world_size}, sharded={self.sharded_table_names()}, "
                f"replicated_sparse={[p.name for p in self._replicated]}, "
                f"local_rows={self.local_weight.shape[0]:,}")
