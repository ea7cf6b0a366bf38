"""Embedding tables behind one interface.

A model never touches ``nn.Embedding`` directly: it owns one ``EmbeddingCollectionInterface``
module that maps a batch of ids ``(B, F)`` (one column per sparse feature, in ``specs`` order) to
embeddings ``(B, F, dim)``. ``EmbeddingCollection`` (below) replicates every table on every worker;
``hamur_dist.embedding.ShardedEmbeddingCollection`` implements the same interface over tables
spread across workers, so sharding never leaks into model code.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class TableSpec:
    name: str        # the sparse feature (and table) name
    num_rows: int    # vocabulary size
    dim: int


class EmbeddingCollectionInterface(nn.Module, abc.ABC):
    """What a model may rely on from its embedding module, whichever way the tables are stored.

    - ``specs``: the tables, one per sparse feature, in the order of the id columns;
    - ``dim``: the width every table shares (``forward`` stacks them);
    - ``output_dim``: the width of the flattened output, ``len(specs) * dim``;
    - ``forward(ids)``: ``(B, F)`` int64 ids -> ``(B, F, dim)`` embeddings.

    ``forward`` checks the ids' shape here, once for every implementation, and hands them to
    ``_embed``, which subclasses implement.
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

    @property
    def output_dim(self) -> int:
        """Width of the flattened output (sum of table dims)."""
        return sum(s.dim for s in self.specs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, F) int64, one column per table in ``specs`` order -> (B, F, dim)."""
        if ids.dim() != 2 or ids.shape[1] != len(self.specs):
            raise ValueError(f"expected ids of shape (B, {len(self.specs)}), got {tuple(ids.shape)}")
        return self._embed(ids)

    @abc.abstractmethod
    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """``forward``'s lookup, on ids whose shape is already checked: (B, F) -> (B, F, dim)."""


class EmbeddingCollection(EmbeddingCollectionInterface):
    """One plain ``nn.Embedding`` per sparse feature (replicated on every worker)."""

    def __init__(self, specs: Sequence[TableSpec], init_std: float = 1e-2):
        super().__init__(specs)
        self.tables = nn.ModuleDict({s.name: nn.Embedding(s.num_rows, s.dim) for s in self.specs})
        for table in self.tables.values():
            nn.init.normal_(table.weight, mean=0.0, std=init_std)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.tables[s.name](ids[:, i]) for i, s in enumerate(self.specs)], dim=1)
