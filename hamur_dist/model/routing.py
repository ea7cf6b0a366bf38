"""Routing rows to their domain's parameters without a Python loop over samples.

The batch is reordered once so that each domain's rows are contiguous; per-domain parameters then
run on one slice (a view) per domain. A domain with no rows in the batch is skipped at evaluation;
in training it runs on its empty slice, so every parameter is in every step's graph (with a zero
gradient) and DDP need not search for unused parameters each step. The logits are put back in the
caller's order at the end.
"""
from __future__ import annotations

from typing import Callable

import torch


class DomainLayout:
    """The rows of one batch grouped by domain: ``perm`` sorts them, ``counts`` sizes the groups."""

    def __init__(self, domain: torch.Tensor, num_domains: int):
        if domain.dim() != 1:
            raise ValueError(f"domain must be a 1-D tensor of domain ids, got shape {tuple(domain.shape)}")
        if domain.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"domain must hold integer ids, got {domain.dtype}")
        domain = domain.long()
        if domain.numel() and int(domain.min()) < 0:
            raise ValueError(f"domain ids must be >= 0, got {int(domain.min())}")
        counts = torch.bincount(domain, minlength=num_domains)
        if counts.numel() > num_domains:
            raise ValueError(f"domain id {counts.numel() - 1} is out of range: the schema has "
                             f"{num_domains} domains (ids 0..{num_domains - 1})")
        self.num_domains = num_domains
        self.counts: list[int] = counts.tolist()        # the one host sync per batch
        self.perm = torch.argsort(domain, stable=True)
        self.domain = domain.index_select(0, self.perm)  # sorted domain ids

    def sort(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, self.perm)

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        """Sorted order -> the caller's order."""
        return torch.empty_like(y).index_copy(0, self.perm, y)

    def groups(self, *tensors: torch.Tensor, include_empty: bool = False):
        """Yield ``(d, slices...)`` for each domain present (every domain with ``include_empty``);
        tensors are in sorted order."""
        parts = [t.split(self.counts) for t in tensors]
        for d, n in enumerate(self.counts):
            if n or include_empty:
                yield (d, *(p[d] for p in parts))

    def per_domain(self, fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
        """``fn(d, *slices)`` on every domain present (every domain when gradients are recorded),
        concatenated back in sorted order."""
        groups = self.groups(*tensors, include_empty=torch.is_grad_enabled())
        return torch.cat([fn(d, *slices) for d, *slices in groups], dim=0)
