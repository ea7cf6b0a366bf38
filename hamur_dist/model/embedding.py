"""Embedding tables behind one interface.

A model never touches ``nn.Embedding`` directly: it owns one ``EmbeddingCollectionInterface``
module that maps a batch of ids ``(B, S)`` to embeddings ``(B, F, dim)``, one vector per sparse
feature (table) in ``specs`` order. Feature ``i`` occupies ``specs[i].max_len`` consecutive id
columns ("slots"): a single-valued feature one column, a multi-valued (multi-hot) one ``max_len``
columns whose unused slots hold ``-1`` (padding); its slot embeddings are pooled (sum or mean of the
non-pad slots, like ``nn.EmbeddingBag``; a row of pads only gives zeros). With only single-valued
tables ``S == F`` and nothing is pooled.

``EmbeddingCollection`` (below) replicates every table on every worker;
``hamur_dist.embedding.ShardedEmbeddingCollection`` implements the same interface over tables
spread across workers, so sharding never leaks into model code.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from hamur_dist.data.manifest import PAD_ID as PAD   # an unused slot of a multi-valued feature

POOLINGS = ("mean", "sum")


@dataclass(frozen=True)
class TableSpec:
    name: str        # the sparse feature (and table) name
    num_rows: int    # vocabulary size
    dim: int
    max_len: int = 1          # id columns (slots) of the feature; > 1: multi-valued, slots pooled
    pooling: str = "mean"     # how a multi-valued feature's slots are pooled: "mean" | "sum"
    multi_hot: bool = False   # multi-valued even with max_len 1 (its one slot may be a pad: an empty list)

    @property
    def pooled(self) -> bool:
        return self.multi_hot or self.max_len > 1

    def __post_init__(self):
        if self.max_len < 1:
            raise ValueError(f"table '{self.name}': max_len must be >= 1, got {self.max_len}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"table '{self.name}': pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")


class EmbeddingCollectionInterface(nn.Module, abc.ABC):
    """What a model may rely on from its embedding module, whichever way the tables are stored.

    - ``specs``: the tables, one per sparse feature, in the order of the id columns;
    - ``dim``: the width every table shares (``forward`` stacks them);
    - ``output_dim``: the width of the flattened output, ``len(specs) * dim``;
    - ``num_slots``: S, the id columns ``forward`` takes (``sum(spec.max_len)``);
    - ``forward(ids)``: ``(B, S)`` int64 ids -> ``(B, F, dim)`` embeddings.

    ``forward`` checks the ids' shape here, once for every implementation, turns the pads of
    multi-valued tables into id 0 and hands the ids to ``_embed``, which subclasses implement (one
    lookup per slot column); it then pools each multi-valued table's slots, pads masked out.
    """

    specs: list[TableSpec]
    dim: int

    def __init__(self, specs: Sequence[TableSpec]):
        super().__init__()
        if not specs:
            raise ValueError(f"{type(self).__name__} needs at least one table")
        dims = [s.dim for s in specs]
        if len(set(dims)) != 1:
            raise ValueError(f"{type(self).__name__}: all tables must share one dim (forward stacks them), "
                             f"got {dims}")
        self.specs = list(specs)
        self.dim = dims[0]
        self.slot_tables = [i for i, s in enumerate(self.specs) for _ in range(s.max_len)]   # column -> spec
        self.num_slots = len(self.slot_tables)
        ends = [sum(s.max_len for s in self.specs[:i + 1]) for i in range(len(self.specs))]
        self.slot_ranges = [(end - s.max_len, end) for s, end in zip(self.specs, ends)]   # spec -> columns
        self.multi_valued = any(s.pooled for s in self.specs)
        self._pad_slots = [self.specs[t].pooled for t in self.slot_tables]   # columns that may hold pads

    @property
    def output_dim(self) -> int:
        """Width of the flattened output (sum of table dims)."""
        return sum(s.dim for s in self.specs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, S) int64, ``max_len`` columns per table in ``specs`` order -> (B, F, dim)."""
        if ids.dim() != 2 or ids.shape[1] != self.num_slots:
            raise ValueError(f"expected ids of shape (B, {self.num_slots}), got {tuple(ids.shape)}")
        if not self.multi_valued:
            return self._embed(ids)
        pad = (ids == PAD) & torch.tensor(self._pad_slots, device=ids.device)
        slots = self._embed(ids.masked_fill(pad, 0))     # pads are looked up as id 0, then masked
        return self._pool(slots, ~pad.to(slots.device))

    def _pool(self, slots: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, S, dim) slot embeddings, (B, S) non-pad mask -> (B, F, dim)."""
        out = []
        for spec, (start, end) in zip(self.specs, self.slot_ranges):
            if not spec.pooled:
                out.append(slots[:, start])
            else:
                weight = keep[:, start:end].unsqueeze(-1).to(slots.dtype)   # pads: zero gradient too
                pooled = (slots[:, start:end] * weight).sum(dim=1)
                if spec.pooling == "mean":
                    pooled = pooled / weight.sum(dim=1).clamp(min=1)
                out.append(pooled)
        return torch.stack(out, dim=1)

    @abc.abstractmethod
    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """``forward``'s lookup, on ids whose shape is already checked and whose pads are id 0:
        (B, S) -> (B, S, dim), one embedding per slot column."""


def pooled_feature(feature) -> bool:
    """Whether a schema's sparse feature is multi-valued (its slots are pooled, -1 pads allowed)."""
    return bool(getattr(feature, "multi_hot", False)) or getattr(feature, "max_len", 1) > 1


def check_ids(ids: torch.Tensor, names: Sequence[str], num_rows: torch.Tensor) -> None:
    """Refuse an id outside ``[0, num_rows[j])`` in column ``j``, naming its table ``names[j]``."""
    bad = (ids < 0) | (ids >= num_rows)
    if torch.compiler.is_exporting():   # no host sync in a traced program: an assertion in the graph
        torch._assert_async(~bad.any(), "a sparse id is outside its table")
    elif bool(bad.any()):
        j = int(bad.any(dim=0).nonzero()[0])
        value = int(ids[:, j][bad[:, j]][0])
        raise ValueError(f"table '{names[j]}': id {value} outside [0, {int(num_rows[j])})")


class EmbeddingCollection(EmbeddingCollectionInterface):
    """One plain ``nn.Embedding`` per sparse feature (replicated on every worker)."""

    def __init__(self, specs: Sequence[TableSpec], init_std: float = 1e-2):
        super().__init__(specs)
        self.tables = nn.ModuleDict({s.name: nn.Embedding(s.num_rows, s.dim) for s in self.specs})
        for table in self.tables.values():
            nn.init.normal_(table.weight, mean=0.0, std=init_std)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.multi_valued:
            return torch.stack([self.tables[s.name](ids[:, i]) for i, s in enumerate(self.specs)], dim=1)
        slot_specs = [self.specs[t] for t in self.slot_tables]     # nn.Embedding's own error names no table
        num_rows = torch.tensor([s.num_rows for s in slot_specs], device=ids.device)
        check_ids(ids, [s.name for s in slot_specs], num_rows)
        return torch.cat([self.tables[s.name](ids[:, start:end])
                          for s, (start, end) in zip(self.specs, self.slot_ranges)], dim=1)
