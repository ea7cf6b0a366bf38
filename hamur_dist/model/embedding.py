"""Embedding tables behind one interface.

A model never touches ``nn.Embedding`` directly: it owns one ``EmbeddingCollection``-like module
that maps a batch of ids ``(B, F)`` (one column per sparse feature, in ``specs`` order) to
embeddings ``(B, F, dim)``. ``hamur_dist.embedding`` provides a sharded module with the same
interface (same ``specs``, same ``forward``), so sharding never leaks into model code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TableSpec:
    name: str        # the sparse feature (and table) name
    num_rows: int    # vocabulary size
    dim: int


class EmbeddingCollection(nn.Module):
    """One plain ``nn.Embedding`` per sparse feature (replicated on every worker)."""

    def __init__(self, specs: list[TableSpec], init_std: float = 1e-2):
        super().__init__()
        if not specs:
            raise ValueError("EmbeddingCollection needs at least one table")
        self.specs = list(specs)
        self.tables = nn.ModuleDict({s.name: nn.Embedding(s.num_rows, s.dim) for s in self.specs})
        for table in self.tables.values():
            nn.init.normal_(table.weight, mean=0.0, std=init_std)

    @property
    def output_dim(self) -> int:
        """Width of the flattened output (sum of table dims)."""
        return sum(s.dim for s in self.specs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, F) int64 -> (B, F, dim). All tables must share one dim for the stacked form."""
        if ids.dim() != 2 or ids.shape[1] != len(self.specs):
            raise ValueError(f"expected ids of shape (B, {len(self.specs)}), got {tuple(ids.shape)}")
        return torch.stack([self.tables[s.name](ids[:, i]) for i, s in enumerate(self.specs)], dim=1)
